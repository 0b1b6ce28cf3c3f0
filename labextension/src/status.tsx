// The notebook toolbar's word on nbrelay: is this kernel's output being kept, and if not,
// what to do. A click asks again (and restores what is missing); beside it, a link opens the
// nbrelay viewer on this kernel, through the Jupyter server (no second login).
import { ReactWidget } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import * as React from 'react';

import { IRelayState, Restorer } from './restorer';

const LABELS: { [state in IRelayState['state']]: string } = {
  relaying: 'nbrelay: relaying',
  'no-daemon': 'nbrelay: daemon not running',
  refused: 'nbrelay: token refused',
  'not-relaying': 'nbrelay: kernel not relaying',
  checking: 'nbrelay: …',
  error: 'nbrelay: unavailable'
};

export class RelayStatus extends ReactWidget {
  constructor(restorer: Restorer) {
    super();
    this.addClass('jp-nbrelay-status');
    this._restorer = restorer;
    restorer.stateChanged.connect(() => this.update(), this);
  }

  render(): JSX.Element {
    const { state, message } = this._restorer.state;
    const kernel = this._restorer.kernelId;
    const viewer = URLExt.join(
      ServerConnection.makeSettings().baseUrl,
      `api/nbrelay/viewer?kernel_id=${encodeURIComponent(kernel ?? '')}`
    );
    return (
      <>
        <button
          type="button"
          className="jp-ToolbarButtonComponent jp-nbrelay-button"
          data-state={state}
          title={`${message}\n(click to restore outputs from nbrelay)`}
          onClick={() => void this._restorer.restore()}
        >
          {LABELS[state]}
        </button>
        {state === 'relaying' && kernel ? (
          <a
            className="jp-nbrelay-viewer"
            href={viewer}
            target="_blank"
            rel="noopener noreferrer"
            title="Open this kernel in the nbrelay viewer"
          >
            viewer
          </a>
        ) : null}
      </>
    );
  }

  private _restorer: Restorer;
}
