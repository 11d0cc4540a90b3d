/**
 * Process accounting from Linux /proc: CPU time of a process (utime + stime) and the owner of a
 * listening TCP port. Everything returns null instead of throwing when /proc is not there (non-Linux)
 * or the process is gone, so the report can print n/a.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK`: the unit of utime/stime in /proc/<pid>/stat (almost always 100). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      const n = Number.parseInt(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim(), 10);
      ticksPerSecond = Number.isFinite(n) && n > 0 ? n : 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** CPU seconds (user + system, all threads) consumed so far by `pid`, or null. */
export function cpuSeconds(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2 (comm) is in parentheses and may contain spaces: split after the last ')'.
  // What follows starts at field 3 (state); utime and stime are fields 14 and 15 (proc(5)).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / clockTicksPerSecond();
}

/** CPU seconds consumed so far by all of `pids` together, or null when none is given or any is unknown. */
export function cpuSecondsOf(pids: readonly number[] | null): number | null {
  if (pids === null || pids.length === 0) return null;
  let sum = 0;
  for (const pid of pids) {
    const c = cpuSeconds(pid);
    if (c === null) return null;
    sum += c;
  }
  return sum;
}

/** The command name of `pid` (`comm`), or null. */
export function processName(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const local = cols[1];
      if (local === undefined || cols[3] !== '0A') continue; // 0A = TCP_LISTEN
      if (local.slice(local.lastIndexOf(':') + 1) !== hexPort) continue;
      const inode = cols[9];
      if (inode !== undefined && inode !== '0') inodes.add(inode);
    }
  }
  return inodes;
}

/**
 * The pid of the process listening on TCP `port` (any local address), found by matching the socket
 * inode from /proc/net/tcp{,6} against /proc/<pid>/fd links. Needs permission to read the other
 * process's fd table (root, or the same user). Null if not found.
 */
export function pidListeningOn(port: number): number | null {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return null;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return null;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m?.[1] !== undefined && inodes.has(m[1])) return Number(pid);
    }
  }
  return null;
}

/**
 * CPU seconds all cores have been busy since boot (everything in the aggregate `cpu` line of
 * /proc/stat except idle and iowait), or null. Busy time minus the broker's and the clients' shows
 * how much other load shared the machine during a measurement.
 */
export function machineBusySeconds(): number | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) return null;
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 8 || f.some((n) => !Number.isFinite(n))) return null;
  const [user, nice, system, , , irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return (user + nice + system + irq + softirq + steal) / clockTicksPerSecond();
}

/** The child processes of `pid` (Linux: /proc/PID/task/TID/children), or [] when unknown. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) {
        const n = Number(c);
        if (c !== '' && Number.isInteger(n)) out.push(n);
      }
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}
