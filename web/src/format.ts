const byteUnits = ["B", "kB", "MB", "GB", "TB"];

/** 1234567 → "1.2 MB" (decimal units, as file managers show them). */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < byteUnits.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${byteUnits[unit]}`;
}

const numberFormat = new Intl.NumberFormat();
export function formatCount(count: number): string {
  return numberFormat.format(count);
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
export function formatDate(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
}

export function plural(count: number, one: string, many: string): string {
  return `${formatCount(count)} ${count === 1 ? one : many}`;
}

const wallClockFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" });

/**
 * A camera's capture time as it was recorded (local wall-clock time, "2023-07-14T18:30:05+02:00"
 * or without the offset), not converted to the viewer's zone: the photo was taken at 18:30 there.
 */
export function formatWallClock(iso: string): string {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:\d{2})?$/.exec(iso);
  if (!match?.[1]) return iso;
  const date = new Date(`${match[1]}Z`);
  if (Number.isNaN(date.getTime())) return iso;
  const offset = match[2] === undefined ? "" : match[2] === "Z" ? " (UTC)" : ` (UTC${match[2]})`;
  return wallClockFormat.format(date) + offset;
}
