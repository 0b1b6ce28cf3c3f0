// One notebook's restore: after the notebook opens, after its kernel connection comes back,
// and on request, ask the Jupyter server what nbrelay kept for the cells' latest executions
// in the current kernel process, and put back what the page does not show. A cell still
// running then receives its output live, through Lab's own output area.
import { Notification } from '@jupyterlab/apputils';
import { CodeCell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { ICellInfo, ICellRestore, IRestoreReply, requestRestore } from './api';
import { AdoptedFuture } from './future';

/** The latest IOPub messages the page received, kept for the next restore: those of an
 * execution that are newer than its snapshot go on top of it (see TAIL_IDS in
 * relay/restore.py, which is five times more, for those that are in both). */
const RECENT = 2000;

/** And at most about this many bytes of them (their contents' JSON): a loop that shows a big
 * output and clears it leaves one in Lab's output area, and would leave 2,000 here. */
const RECENT_BYTES = 16 * 2 ** 20;

/** When to ask again when a snapshot came from a relay that was behind the page (ms): on a
 * loaded machine the relay was seen seconds behind, so the last tries are far apart. */
const RETRIES = [100, 300, 1000, 3000, 6000, 12000];

/** The IOPub messages the relay stores under their own msg_id (CAPTURED_TYPES in
 * relay/protocol.py): only these can tell whether a snapshot reaches what came live. A
 * widget's updates are stored merged under the latest's id, and other comms not at all. */
const STORED_AS_SENT = new Set([
  'stream',
  'error',
  'display_data',
  'update_display_data',
  'execute_result',
  'clear_output',
  'execute_input',
  'status'
]);

/** When to ask again after a cell ran while the kernel was not relaying (ms). */
const RECHECKS = [0, 500, 2000, 5000];

/** The state the status item shows. */
export interface IRelayState {
  state: IRestoreReply['state'] | 'checking' | 'error';
  message: string;
}

/** An execution of another page (or of this page before a reload) that this page follows. */
interface IAdopted {
  cell: CodeCell;
  future: AdoptedFuture;
  count: number | null;
  tail: Set<string>;
}

function isCode(cell: unknown): cell is CodeCell {
  return cell instanceof CodeCell;
}

/** The output an IOPub message makes, as a message Lab's output area takes. */
function asMessage(request: string, output: ICellRestore['outputs'][number]) {
  return {
    header: { msg_id: '', msg_type: output.msg_type },
    parent_header: { msg_id: request },
    metadata: {},
    content: output.content,
    channel: 'iopub'
  } as unknown as KernelMessage.IIOPubMessage;
}

/** Representations that show without running anything of the output's own. */
const WIDGET = 'application/vnd.jupyter.widget-view+json';

const INERT = new Set([
  'text/plain',
  'image/png',
  'image/jpeg',
  'image/gif',
  'application/json',
  'application/vnd.jupyter.widget-view+json'
]);

function inert(output: ICellRestore['outputs'][number]): boolean {
  const data = output.content.data;
  return (
    output.msg_type === 'stream' ||
    output.msg_type === 'error' ||
    output.msg_type === 'clear_output' ||
    (typeof data === 'object' && data !== null && Object.keys(data).every(m => INERT.has(m)))
  );
}

/** JSON with sorted keys: the same value gives the same text whatever built it. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonical).join(',')}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as { [key: string]: unknown })
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What a cell shows, comparable with what a restore would put there. */
function shown(cell: CodeCell): string {
  const outputs = cell.model.outputs.toJSON() as unknown as { [key: string]: unknown }[];
  return canonical([cell.model.executionCount, outputs.map(withoutWidgetText)]);
}

/** The outputs a restore shows: not a clear_output waiting for the next one. */
function outputsOf(restore: ICellRestore): ICellRestore['outputs'] {
  return restore.outputs.filter(o => o.msg_type !== 'clear_output');
}

function planned(restore: ICellRestore): string {
  const outputs = outputsOf(restore).map(o => {
    const content = { ...o.content };
    delete content.transient; // not saved in a notebook
    if (o.msg_type === 'stream') {
      // The \r and the text after it that put Lab's cursor back inside the last line (see
      // relay/restore.py) leave the text as it was: the rest of the text has no \r left.
      content.text = (content.text as string).replace(/\r[^\n\r]*$/, '');
    }
    return { output_type: o.msg_type, ...content };
  });
  return canonical([restore.execution_count, outputs.map(withoutWidgetText)]);
}

/** An output without the text fallback of a widget it shows: the relay writes the widget's
 * final text there, the page keeps what the kernel first sent, and the widget is the same. */
function withoutWidgetText(output: { [key: string]: unknown }): unknown {
  const data = output.data as { [mime: string]: unknown } | undefined;
  if (!data || data[WIDGET] === undefined) {
    return output;
  }
  const { 'text/plain': _, ...rest } = data; // eslint-disable-line @typescript-eslint/no-unused-vars
  return { ...output, data: rest };
}

/** The user's settings (schema/plugin.json), read when a restore would start by itself. */
export interface IRestorerOptions {
  autoRestore: boolean;
}

export class Restorer implements IDisposable {
  constructor(panel: NotebookPanel, options: IRestorerOptions) {
    this._panel = panel;
    this._options = options;
    const session = panel.sessionContext;
    session.kernelChanged.connect(this._onKernelChanged, this);
    session.statusChanged.connect(this._onStatus, this);
    void session.ready.then(() => this._attach(session.session?.kernel ?? null));
  }

  /** Emitted whenever the relay's state for this notebook's kernel is known anew. */
  get stateChanged(): ISignal<this, IRelayState> {
    return this._stateChanged;
  }

  get state(): IRelayState {
    return this._state;
  }

  /** The id of the notebook's kernel, once it has one. */
  get kernelId(): string | null {
    return this._kernel?.id ?? null;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    window.clearTimeout(this._rechecking);
    window.clearTimeout(this._retrying);
    this._attach(null);
    Signal.clearData(this);
  }

  /** Ask what nbrelay kept, and put back what the page does not show; ``auto``: unasked,
   * so only the relay's state is asked for when the user turned automatic restores off. */
  async restore(auto = false): Promise<void> {
    const kernel = this._kernel;
    if (!kernel || this._disposed) {
      return;
    }
    if (this._running) {
      // Once this one is done: what it asked may be out of date. A click is never an
      // automatic restore, whatever else was waiting.
      this._again = true;
      this._againAuto = this._againAuto && auto;
      return;
    }
    this._running = true;
    let stale = false;
    const process = this._process;
    const gap = this._gap; // the connection was lost since the last restore
    this._gap = false;
    try {
      const reply = await requestRestore(kernel.id, this._cells());
      if (kernel !== this._kernel || process !== this._process) {
        // Changed or restarted meanwhile: the answer is about another process. Whoever
        // changed it asked again (see _attach and _onStatus), and that runs below.
        this._again = true;
      } else {
        this._setState({ state: reply.state, message: reply.message });
        if (!auto || this._options.autoRestore) {
          this._apply(reply.cells ?? [], gap);
        }
        stale = this._stale(reply.cells ?? []);
      }
    } catch (error) {
      this._setState({
        state: 'error',
        message: `could not ask the Jupyter server about nbrelay: ${(error as Error).message}`
      });
      if (this._kernel?.status === 'idle') {
        this._finishAdopted(); // what the page has is all there will be
      }
    } finally {
      this._running = false;
    }
    if (this._again) {
      const again = this._againAuto;
      this._again = false;
      this._againAuto = true;
      await this.restore(again);
    } else if (stale && this._retries < RETRIES.length) {
      // The relay was behind the page: ask again once it has caught up.
      window.clearTimeout(this._retrying);
      this._retrying = window.setTimeout(
        () => void this.restore(auto),
        RETRIES[this._retries++]
      );
    } else {
      this._retries = 0;
      if (stale && this._kernel?.status === 'idle') {
        this._finishAdopted(); // their end never reached the relay: the kernel is idle
      }
    }
  }

  /** Whether a snapshot may miss output that this page will never receive live: it says an
   * execution runs while the kernel is idle (its end was not stored yet), or it ends before
   * the first message of that execution this page received (the page connected meanwhile,
   * and what came before it was not stored yet). Records and live output come in one order,
   * so a snapshot that holds that first message misses nothing. */
  private _stale(restores: ICellRestore[]): boolean {
    return restores.some(restore => {
      if (!restore.running) {
        return false;
      }
      const first = this._firstLive.get(restore.request);
      return (
        this._kernel?.status === 'idle' ||
        (first !== undefined && !restore.tail_ids.includes(first))
      );
    });
  }

  private _cells(): ICellInfo[] {
    return this._panel.content.widgets.filter(isCode).map(cell => ({
      id: cell.model.id,
      source: cell.model.sharedModel.getSource(),
      execution_count: cell.model.executionCount
    }));
  }

  private _apply(restores: ICellRestore[], gap: boolean): void {
    const cells = new Map(
      this._panel.content.widgets.filter(isCode).map(cell => [cell.model.id, cell])
    );
    let outputs = 0;
    let restored = 0;
    for (const restore of restores) {
      const cell = cells.get(restore.cell_id);
      if (!cell || cell.isDisposed) {
        continue;
      }
      const future = cell.outputArea.future as unknown;
      const following =
        future &&
        !(future as AdoptedFuture).isDisposed &&
        (future as AdoptedFuture).msg?.header.msg_id === restore.request;
      if (following && !(future instanceof AdoptedFuture) && !gap) {
        continue; // this page's own execution, and it lost nothing: Lab has it in hand
      }
      if (
        restore.trimmed &&
        !restore.running &&
        !following &&
        !gap &&
        cell.model.executionCount === restore.execution_count &&
        cell.model.outputs.length
      ) {
        continue; // it shows that execution, ended, so whole: more than a cut restore has
      }
      if (shown(cell) === planned(restore) && (following || !restore.running)) {
        if (!restore.running) {
          this._finish(restore.request); // followed to its end, whole
        }
        continue; // shown whole already, and followed live if it runs
      }
      this._adopt(cell, restore);
      outputs += outputsOf(restore).length;
      restored += 1;
    }
    if (restored) {
      Notification.info(
        `nbrelay restored ${outputs} ${outputs === 1 ? 'output' : 'outputs'} in ${restored} ${
          restored === 1 ? 'cell' : 'cells'
        }`,
        { autoClose: 5000 }
      );
    }
  }

  /** Show ``restore`` in ``cell``, and follow the execution live if it still runs. */
  private _adopt(cell: CodeCell, restore: ICellRestore): void {
    const request = restore.request;
    this._adopted.get(request)?.future.dispose();
    const future = new AdoptedFuture(request, () => {
      if (this._adopted.get(request)?.future === future) {
        this._adopted.delete(request);
      }
    });
    // Takes the place of the cell's future (a request of this page that lost messages is
    // adopted too) and clears its outputs, as a new execution does.
    cell.outputArea.future = future.asShellFuture();
    // As a cell that ran in this page is: trusted, so that a widget's view is drawn from the
    // kernel's live model, but only if no output can run script (records pass through the
    // daemon, and whoever holds its token could add some).
    cell.model.trusted = restore.outputs.every(inert);
    for (const output of restore.outputs) {
      void future.onIOPub(asMessage(request, output));
    }
    if (!restore.running) {
      future.dispose();
      cell.model.executionCount = restore.execution_count;
      cell.model.executionState = 'idle';
      return;
    }
    const adopted = { cell, future, count: restore.execution_count, tail: new Set(restore.tail_ids) };
    this._adopted.set(request, adopted);
    cell.model.executionState = 'running';
    for (const { msg } of this._recent) {
      if (msg.parent_header && (msg.parent_header as { msg_id?: string }).msg_id === request) {
        this._follow(adopted, msg);
      }
    }
  }

  /** A live message of an adopted execution: to Lab's output area, unless restored already. */
  private _follow(adopted: IAdopted, msg: KernelMessage.IIOPubMessage): void {
    if (adopted.future.isDisposed || adopted.tail.has(msg.header.msg_id)) {
      return;
    }
    if (KernelMessage.isExecuteInputMsg(msg)) {
      adopted.count = msg.content.execution_count;
    }
    void adopted.future.onIOPub(msg);
    if (KernelMessage.isStatusMsg(msg) && msg.content.execution_state === 'idle') {
      // The relay's record of the whole execution has the last word: whatever the page may
      // have missed where the snapshot met the live output, the end puts right.
      void this.restore();
    }
  }

  private _onIOPub(kernel: Kernel.IKernelConnection, msg: KernelMessage.IIOPubMessage): void {
    const bytes = JSON.stringify(msg.content).length;
    this._recent.push({ msg, bytes });
    this._recentBytes += bytes;
    let drop = 0;
    while (
      this._recent.length - drop > RECENT ||
      (this._recentBytes > RECENT_BYTES && drop < this._recent.length - 1)
    ) {
      this._recentBytes -= this._recent[drop++].bytes;
    }
    this._recent.splice(0, drop);
    const parent = (msg.parent_header as { msg_id?: string } | undefined)?.msg_id;
    const adopted = parent ? this._adopted.get(parent) : undefined;
    if (parent && !this._firstLive.has(parent) && STORED_AS_SENT.has(msg.header.msg_type)) {
      this._firstLive.set(parent, msg.header.msg_id);
      if (adopted && !adopted.tail.has(msg.header.msg_id)) {
        // Adopted before anything of it came live, so _stale could not tell whether its
        // snapshot reaches this first live message: what the relay had not stored yet when
        // it was asked may lie in between. Ask again; _stale then knows.
        void this.restore();
      }
    }
    if (adopted) {
      this._follow(adopted, msg);
    } else if (
      this._state.state !== 'relaying' &&
      KernelMessage.isStatusMsg(msg) &&
      msg.content.execution_state === 'idle' &&
      (msg.parent_header as { msg_type?: string }).msg_type === 'execute_request'
    ) {
      this._recheck(0); // perhaps that cell loaded nbrelay: say so
    }
  }

  /** Ask again after a cell ran while the kernel was not relaying: a hook that was just
   * loaded needs a moment to reach the daemon, so a few times, further apart, then no more
   * until the next cell (an idle notebook asks nothing). */
  private _recheck(attempt: number): void {
    window.clearTimeout(this._rechecking);
    if (attempt >= RECHECKS.length || this._disposed) {
      return;
    }
    this._rechecking = window.setTimeout(async () => {
      await this.restore(true);
      if (this._state.state !== 'relaying') {
        this._recheck(attempt + 1);
      }
    }, RECHECKS[attempt]);
  }

  private _onConnection(kernel: Kernel.IKernelConnection, status: Kernel.ConnectionStatus): void {
    if (status !== 'connected') {
      this._lost = this._connected;
      return;
    }
    const first = !this._connected;
    this._connected = true;
    if (first || this._lost) {
      // First: only now does the page receive live output, so only now can a snapshot and
      // what comes live meet. Lost: messages of the gap may be missing (a blip, a restart).
      this._gap = this._lost;
      this._lost = false;
      this._firstLive.clear(); // what counts is what comes from now on
      void this.restore(true);
    }
  }

  private _onKernelChanged(): void {
    this._attach(this._panel.sessionContext.session?.kernel ?? null);
  }

  private _onStatus(_: unknown, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._process += 1; // an answer asked for before this is about the old process
      this._dropAdopted(); // that process is gone: nothing more comes for its executions
    }
    if (status === 'idle' && this._restarted) {
      this._restarted = false;
      void this.restore(true); // the new process: relaying or not
    }
    if (status === 'restarting' || status === 'autorestarting') {
      this._restarted = true;
    }
  }

  /** End what this page follows as the kernel's idle status says: nothing runs. */
  private _finishAdopted(): void {
    for (const request of [...this._adopted.keys()]) {
      this._finish(request);
    }
  }

  /** An execution this page follows has ended: its count, and the prompt no longer [*]. */
  private _finish(request: string): void {
    const adopted = this._adopted.get(request);
    if (!adopted) {
      return;
    }
    adopted.future.dispose(); // and out of _adopted
    adopted.cell.model.executionCount = adopted.count;
    adopted.cell.model.executionState = 'idle';
  }

  private _dropAdopted(): void {
    for (const adopted of [...this._adopted.values()]) {
      adopted.future.dispose();
      if (adopted.cell.model.executionState === 'running') {
        adopted.cell.model.executionState = 'idle';
      }
    }
    this._adopted.clear();
  }

  private _attach(kernel: Kernel.IKernelConnection | null): void {
    if (kernel === this._kernel && kernel !== null) {
      return;
    }
    if (this._kernel) {
      this._kernel.iopubMessage.disconnect(this._onIOPub, this);
      this._kernel.connectionStatusChanged.disconnect(this._onConnection, this);
    }
    this._dropAdopted();
    this._recent = [];
    this._recentBytes = 0;
    this._firstLive.clear();
    this._kernel = this._disposed ? null : kernel;
    this._connected = false;
    this._lost = false;
    if (!this._kernel) {
      return;
    }
    this._kernel.iopubMessage.connect(this._onIOPub, this);
    this._kernel.connectionStatusChanged.connect(this._onConnection, this);
    this._setState({ state: 'checking', message: 'waiting for the kernel connection' });
    this._connected = this._kernel.connectionStatus === 'connected';
    if (this._connected) {
      void this.restore(true);
    }
  }

  private _setState(state: IRelayState): void {
    this._state = state;
    this._stateChanged.emit(state);
  }

  private _panel: NotebookPanel;
  private _options: IRestorerOptions;
  private _kernel: Kernel.IKernelConnection | null = null;
  private _adopted = new Map<string, IAdopted>();
  private _recent: { msg: KernelMessage.IIOPubMessage; bytes: number }[] = [];
  private _recentBytes = 0;
  private _running = false;
  private _again = false;
  private _againAuto = true;
  private _gap = false;
  private _process = 0; // counts the kernel's restarts: the same connection object survives them
  private _retrying = 0;
  private _connected = false;
  private _lost = false;
  private _restarted = false;
  private _rechecking = 0;
  private _retries = 0;
  private _firstLive = new Map<string, string>(); // request -> its first message seen live
  private _disposed = false;
  private _state: IRelayState = { state: 'checking', message: 'waiting for the kernel' };
  private _stateChanged = new Signal<this, IRelayState>(this);
}
