// The notebook extension talks only to its own Jupyter server, under the server's login;
// the server talks to the nbrelay daemon (relay/jupyter_extension.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An output to put back, as the IOPub message content that makes it. */
export interface IRestoredOutput {
  msg_type: 'stream' | 'display_data' | 'execute_result' | 'error' | 'clear_output';
  content: { [key: string]: unknown };
}

/** What to put back into one cell: its latest execution in the current kernel process. */
export interface ICellRestore {
  cell_id: string;
  request: string;
  execution_count: number | null;
  running: boolean;
  outputs: IRestoredOutput[];
  /** A stream in ``outputs`` is cut to its end (see PAGE_LINES in relay/restore.py). */
  trimmed: boolean;
  tail_ids: string[];
}

/** The relay's state for the notebook's kernel, and what to put back. */
export interface IRestoreReply {
  state: 'relaying' | 'no-daemon' | 'refused' | 'not-relaying';
  message: string;
  cells?: ICellRestore[];
}

export interface ICellInfo {
  id: string;
  source: string;
  execution_count: number | null;
}

export async function requestRestore(
  kernelId: string,
  cells: ICellInfo[]
): Promise<IRestoreReply> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'api/nbrelay/restore');
  const response = await ServerConnection.makeRequest(
    url,
    { method: 'POST', body: JSON.stringify({ kernel_id: kernelId, cells }) },
    settings
  );
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  return (await response.json()) as IRestoreReply;
}
