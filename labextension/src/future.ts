// A stand-in for the kernel future of an execute request that another page (or this page
// before a reload) sent: JupyterLab's output area takes it like its own, so what arrives
// for that request is handled by Lab's own output rules, not by a copy of them.
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { PromiseDelegate } from '@lumino/coreutils';

type IOPubHandler = (msg: KernelMessage.IIOPubMessage) => void | PromiseLike<boolean>;

export class AdoptedFuture {
  constructor(request: string, onDispose: () => void) {
    this.msg = { header: { msg_id: request, msg_type: 'execute_request' } };
    this._onDispose = onDispose;
    // Nobody waits for a reply that this page will never see.
    this._done.promise.catch(() => undefined);
  }

  readonly msg: { header: { msg_id: string; msg_type: string } };

  get done(): Promise<undefined> {
    return this._done.promise;
  }

  onIOPub: IOPubHandler = () => undefined;
  onReply: (msg: KernelMessage.IExecuteReplyMsg) => void = () => undefined;
  onStdin: (msg: KernelMessage.IStdinMessage) => void = () => undefined;

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Called by the output area when a new execution of the cell takes its place. */
  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._done.resolve(undefined);
    this._onDispose();
  }

  registerMessageHook(): void {}
  removeMessageHook(): void {}
  sendInputReply(): void {}

  asShellFuture(): Kernel.IShellFuture<
    KernelMessage.IExecuteRequestMsg,
    KernelMessage.IExecuteReplyMsg
  > {
    return this as unknown as Kernel.IShellFuture<
      KernelMessage.IExecuteRequestMsg,
      KernelMessage.IExecuteReplyMsg
    >;
  }

  private _disposed = false;
  private _done = new PromiseDelegate<undefined>();
  private _onDispose: () => void;
}
