// What Node code of this package expects from the platform and browsers lack: setImmediate, with
// which generate() yields to the event loop between tokens (so a Worker's "stop" message is
// handled mid-generation). A message on a MessageChannel is a macrotask, as setImmediate is in Node.
const g = globalThis as { setImmediate?: (fn: () => void) => unknown };
if (typeof g.setImmediate !== 'function') {
  const ch = new MessageChannel();
  const queue: (() => void)[] = [];
  ch.port1.onmessage = () => queue.shift()?.();
  g.setImmediate = (fn: () => void) => {
    queue.push(fn);
    ch.port2.postMessage(0);
  };
}

export {};
