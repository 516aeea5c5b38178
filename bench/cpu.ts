/**
 * Who used the CPU during a measurement, read from /proc (Linux): the server under test, the load
 * generator, and everything else on the machine. The benchmark shares its cores with whatever else
 * runs there; a figure taken while other work held a core is not comparable, and says so.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

const ticksPerSecond = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

interface Sample {
  at: number;
  machineBusy: number;
  byPid: Map<number, number>;
}

export interface CpuUse {
  /** Cores used over the interval, per watched process. */
  byPid: Map<number, number>;
  /** Cores used by everything not watched. */
  other: number;
}

function machineBusyTicks(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return user + nice + system + irq + softirq + steal;
}

function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

export function sampleCpu(pids: number[]): Sample | undefined {
  try {
    return { at: performance.now(), machineBusy: machineBusyTicks(), byPid: new Map(pids.map((pid) => [pid, processTicks(pid)])) };
  } catch {
    return undefined; // not Linux: no breakdown
  }
}

export function cpuBetween(start: Sample | undefined, end: Sample | undefined): CpuUse | undefined {
  if (!start || !end) return undefined;
  const seconds = (end.at - start.at) / 1000;
  const cores = (ticks: number) => ticks / ticksPerSecond / seconds;
  const byPid = new Map<number, number>();
  let watched = 0;
  for (const [pid, before] of start.byPid) {
    const used = (end.byPid.get(pid) ?? before) - before;
    watched += used;
    byPid.set(pid, cores(used));
  }
  return { byPid, other: Math.max(0, cores(end.machineBusy - start.machineBusy - watched)) };
}
