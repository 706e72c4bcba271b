// What the test machine's CPU has, for tests whose expectations depend on it.
import fs from 'node:fs';

/** Whether Linux's /proc/cpuinfo lists AVX-VNNI (false elsewhere) */
export function cpuHasAvxVnni(): boolean {
  try {
    return /^flags\s*:.*\bavx_vnni\b/m.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}
