// nbrelay in JupyterLab and Notebook 7: the outputs nbrelay kept come back into the notebook
// after a reopen, a reload or a network blip, and a running cell keeps receiving its output.
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { Restorer } from './restorer';
import { RelayStatus } from './status';

const RESTORE = 'nbrelay:restore';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbrelay:plugin',
  description: 'Outputs kept by nbrelay come back into the notebook.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const restorers = new WeakMap<NotebookPanel, Restorer>();
    const options = { autoRestore: true };
    settingRegistry
      ?.load(plugin.id)
      .then(settings => {
        const read = () => {
          options.autoRestore = settings.get('autoRestore').composite !== false;
        };
        read();
        settings.changed.connect(read);
      })
      .catch(reason => console.warn('nbrelay: its settings could not be read', reason));
    tracker.widgetAdded.connect((_, panel) => {
      const restorer = new Restorer(panel, options);
      restorers.set(panel, restorer);
      panel.toolbar.addItem('nbrelay', new RelayStatus(restorer));
      panel.disposed.connect(() => restorer.dispose());
    });
    app.commands.addCommand(RESTORE, {
      label: 'Restore outputs from nbrelay',
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const panel = tracker.currentWidget;
        if (panel) {
          await restorers.get(panel)?.restore();
        }
      }
    });
    palette?.addItem({ command: RESTORE, category: 'Notebook Operations' });
  }
};

export default plugin;
