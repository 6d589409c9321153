// Small pieces shared by the pages.

import { type ReactNode, useEffect, useRef } from "react";
import type { Backpressure, JobState } from "./api";

export function StateBadge({ state }: { state: JobState }) {
  return <span className={`badge state-${state.toLowerCase()}`}>{state}</span>;
}

export function BackpressureBadge({ level }: { level: Backpressure }) {
  return <span className={`badge bp-${level.toLowerCase()}`}>{level}</span>;
}

/** A modal dialog asking before an action is taken. */
export function Confirm({
  open,
  title,
  children,
  confirm,
  onConfirm,
  onClose,
}: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirm: string;
  onConfirm: () => void;
  onClose: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = dialog.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={dialog} aria-label={title} onClose={onClose}>
      <h2>{title}</h2>
      <div>{children}</div>
      <div className="buttons">
        <button type="button" onClick={onClose}>
          Back
        </button>
        <button
          type="button"
          className="primary"
          onClick={() => {
            onConfirm();
            onClose();
          }}
        >
          {confirm}
        </button>
      </div>
    </dialog>
  );
}
