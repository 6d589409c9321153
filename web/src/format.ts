// How numbers, times and sizes are shown.

/** i64's least: Flink's "no watermark yet". */
export const NO_WATERMARK = -9223372036854775808;

export function watermark(w: number): string {
  if (w <= -9.2e18) return "none yet";
  if (w >= 9.2e18) return "end of input";
  // Event times of a few years either side of now read as dates.
  if (w > 946684800000 && w < 4102444800000) return new Date(w).toISOString().replace("T", " ").replace("Z", "");
  return `${w} ms`;
}

export function rate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M/s`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k/s`;
  return `${n.toFixed(0)}/s`;
}

export function count(n: number): string {
  return n.toLocaleString("en-US");
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function time(epochMs: number): string {
  return new Date(epochMs).toLocaleString("en-GB");
}
