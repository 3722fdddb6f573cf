// WHATWG streams over a peerwire Stream (wasm-bindgen imports these).

export function readableFrom(stream) {
  let done = false;
  return new ReadableStream({
    start(controller) {
      const finish = () => { if (!done) { done = true; controller.close(); } };
      stream.on('message', (m) => { if (!done) controller.enqueue(m); });
      stream.on('end', finish);
      stream.on('close', finish);
      stream.on('error', (e) => { if (!done) { done = true; controller.error(e); } });
    },
    cancel() {
      done = true;
      stream.close();
    },
  });
}

export function writableTo(stream) {
  return new WritableStream({
    write(chunk) { return stream.send(chunk); },
    close() { return stream.end(); },
    abort() { stream.close(); },
  });
}

// A ReadableStream of body chunks pulled from a rest BodyReader.
export function readableFromReader(reader) {
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel() { reader.cancel(); },
  });
}

// An async iterable over a rest record set: each step pulls one record.
export function recordsFromReader(reader) {
  return {
    [Symbol.asyncIterator]() {
      return {
        next: () => reader.nextRecord(),
        return: async () => { reader.cancel(); return { done: true, value: undefined }; },
      };
    },
  };
}

// Iterates any async (or sync) iterable: returns a function giving the next
// { done, value } as a Promise.
export function iterate(source) {
  const it = source[Symbol.asyncIterator] ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  return () => Promise.resolve(it.next());
}
