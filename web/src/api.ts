// The public REST API (docs/rest-api.md), and nothing else: the types
// below are the OpenAPI document's schemas the dashboard reads.

import { useEffect, useRef, useState } from "react";

export type JobState =
  | "CREATED"
  | "RUNNING"
  | "FAILING"
  | "FAILED"
  | "CANCELLING"
  | "CANCELED"
  | "FINISHED"
  | "RESTARTING";

export const TERMINAL: JobState[] = ["FAILED", "CANCELED", "FINISHED"];

export interface Overview {
  version: string;
  wit: string;
  workers: number;
  "slots-total": number;
  "slots-available": number;
  jobs: Record<string, number>;
  bundles: number;
  "read-only": boolean;
}

export interface WorkerInfo {
  id: string;
  address: string;
  "slots-total": number;
  "slots-free": number;
  jobs: string[];
}

export interface JobInfo {
  id: string;
  name: string;
  state: JobState;
  "start-time": number;
  "end-time": number | null;
  duration: number;
  bundle: string | null;
}

export interface Metrics {
  numRecordsIn: number;
  numRecordsOut: number;
  numRecordsInPerSecond: number;
  numRecordsOutPerSecond: number;
  numBytesIn: number;
  numBytesOut: number;
  numBytesInPerSecond: number;
  numBytesOutPerSecond: number;
  currentInputWatermark: number;
  currentOutputWatermark: number;
  busyTimeMsPerSecond: number;
  idleTimeMsPerSecond: number;
  backPressuredTimeMsPerSecond: number;
}

export type Backpressure = "OK" | "LOW" | "HIGH";

export interface UserMetric {
  name: string;
  kind: string;
  value: number;
}

/** A channel to a subtask downstream, and how long it keeps its sender waiting. */
export interface ChannelInfo {
  to: string;
  subtask: number;
  remote: boolean;
  backPressuredTimeMsPerSecond: number;
  backpressure: Backpressure;
}

export interface SubtaskInfo {
  subtask: number;
  backpressure: Backpressure;
  metrics: Metrics;
  "user-metrics": UserMetric[];
  channels: ChannelInfo[];
}

export interface VertexInfo {
  id: string;
  kind: "source" | "operator" | "sink";
  parallelism: number;
  inputs: string[];
  backpressure: Backpressure;
  metrics: Metrics;
  "user-metrics": UserMetric[];
  subtasks: SubtaskInfo[];
}

export interface JobDetail {
  id: string;
  name: string;
  state: JobState;
  "status-message": string | null;
  timestamps: Record<string, number>;
  "start-time": number;
  "end-time": number | null;
  duration: number;
  bundle: string | null;
  parallelism: number;
  "max-parallelism": number;
  slots: number;
  "working-dir": string;
  restarts: number;
  vertices: VertexInfo[];
}

export interface ExceptionInfo {
  exception: string;
  kind: string;
  operator: string;
  subtask: number;
  record: string | null;
  timestamp: number;
}

export interface Exceptions {
  "root-exception": ExceptionInfo | null;
  "exception-history": ExceptionInfo[];
}

export interface CheckpointInfo {
  id: number;
  status: "IN_PROGRESS" | "COMPLETED" | "FAILED";
  "is-savepoint": boolean;
  "trigger-timestamp": number;
  "end-to-end-duration": number;
  "state-size": number;
  "num-acknowledged-subtasks": number;
  "num-subtasks": number;
  "external-path": string | null;
  "alignment-duration": number;
  "sync-duration-us": number;
  "persisted-data": number;
  "failure-message": string | null;
}

export interface Checkpoints {
  counts: { "in-progress": number; completed: number; failed: number };
  "latest-completed": CheckpointInfo | null;
  history: CheckpointInfo[];
}

export interface TaskCheckpointInfo {
  vertices: string[];
  subtask: number;
  "end-to-end-duration": number;
  "start-delay": number;
  "alignment-duration": number;
  "sync-duration-us": number;
  "state-size": number;
  "persisted-data": number;
  unaligned: boolean;
  finished: boolean;
}

export interface CheckpointDetail {
  checkpoint: CheckpointInfo;
  tasks: TaskCheckpointInfo[];
}

export interface BundleInfo {
  id: string;
  name: string;
  version: string;
  size: number;
  "uploaded-at": number;
  spec: string;
  jobs: string[];
}

export interface RateHistory {
  timestamps: number[];
  vertices: Record<
    string,
    {
      "records-in-per-second": number[];
      "records-out-per-second": number[];
      "busy-time-ms-per-second": number[];
      "back-pressured-time-ms-per-second": number[];
    }
  >;
}

export interface Operation {
  status: "IN_PROGRESS" | "COMPLETED";
  "job-state": JobState;
  "failure-cause": string | null;
}

export interface SavepointOperation extends Operation {
  location: string | null;
}

export interface ErrorItem {
  place: string;
  message: string;
}

/** A refused call: the API's `errors`, each naming its place. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public errors: ErrorItem[],
  ) {
    super(errors.map((e) => `${e.place}: ${e.message}`).join("\n") || `HTTP ${status}`);
  }
}

const TOKEN_KEY = "weir-token";

/** The coordinator's token, for calls that change something beyond localhost. */
export function token(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(t: string) {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** A body as JSON, or null when it is not (a proxy's HTML page, say). */
function json(text: string): any {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

async function answer<T>(r: Response): Promise<T> {
  const text = await r.text();
  const body = json(text);
  if (!r.ok) {
    const errors: ErrorItem[] = body?.errors ?? [{ place: "response", message: text || r.statusText }];
    throw new ApiError(r.status, errors);
  }
  return body as T;
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return answer<T>(await fetch(path, { headers: headers(), signal }));
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  const r = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body ?? {}),
  });
  return answer<T>(r);
}

/** Uploads a file as the body, reporting progress (fetch cannot). */
export function upload<T>(path: string, file: Blob, progress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("POST", path);
    for (const [k, v] of Object.entries(headers({ "Content-Type": "application/octet-stream" }))) {
      x.setRequestHeader(k, v);
    }
    x.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
    x.onload = () => {
      const body = json(x.responseText);
      if (x.status >= 200 && x.status < 300 && body !== null) resolve(body as T);
      else reject(new ApiError(x.status, body?.errors ?? [{ place: "upload", message: `HTTP ${x.status} ${x.statusText}` }]));
    };
    x.onerror = () => reject(new ApiError(0, [{ place: "upload", message: "the connection failed" }]));
    x.send(file);
  });
}

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  /** When `data` was fetched, ms since the epoch. */
  at: number;
}

/**
 * `path` fetched now and then every `every` ms (a request at a time, so a
 * slow coordinator is not flooded); the last answer stays while the next
 * is on its way. `null` fetches nothing.
 */
export function usePoll<T>(path: string | null, every = 1000): Polled<T> {
  const [state, setState] = useState<Polled<T>>({ data: undefined, error: undefined, at: 0 });
  const current = useRef(path);
  current.current = path;
  useEffect(() => {
    setState({ data: undefined, error: undefined, at: 0 });
    if (!path) return;
    const abort = new AbortController();
    let timer: number | undefined;
    const tick = async () => {
      try {
        const data = await get<T>(path, abort.signal);
        if (current.current === path) setState({ data, error: undefined, at: Date.now() });
      } catch (e) {
        if (abort.signal.aborted) return;
        setState((s) => ({ ...s, error: e as Error }));
      }
      if (!abort.signal.aborted) timer = window.setTimeout(tick, every);
    };
    tick();
    return () => {
      abort.abort();
      window.clearTimeout(timer);
    };
  }, [path, every]);
  return state;
}
