// A TypeDoc plugin for what wasm-bindgen adds to the definitions by itself,
// which no doc comment in src/api can reach: `free()` and
// `[Symbol.dispose]()` on every class get one shared description, and the
// raw wasm exports of the loader's `InitOutput` are left out of the pages.
// Everything else must be documented at its source (docs.sh treats a
// missing comment as an error).
import { Comment, Converter, ReflectionKind } from 'typedoc';

const text = (s) => new Comment([{ kind: 'text', text: s }]);

const GLUE_METHODS = {
  free: 'Frees the handle\'s memory in the wasm module at once (wasm-bindgen); otherwise the garbage collector does. Call `close()` first to end what the object does.',
  '[dispose]': 'The same as `free()`, for `using` declarations (wasm-bindgen).',
};
const GLUE_TYPES = {
  InitOutput: 'The raw exports of the wasm module, as `init()` resolves them (wasm-bindgen); not an API to call.',
  InitInput: 'What `init()` can load the wasm module from: a URL, a `Response`, bytes or a compiled module (wasm-bindgen).',
  SyncInitInput: 'What `initSync()` can instantiate the wasm module from: bytes or a compiled module (wasm-bindgen).',
};

export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    const project = context.project;
    for (const method of project.getReflectionsByKind(ReflectionKind.Method)) {
      const note = GLUE_METHODS[method.name];
      if (!note || method.parent?.kind !== ReflectionKind.Class) continue;
      for (const signature of method.signatures ?? []) signature.comment ??= text(note);
    }
    for (const reflection of project.getReflectionsByKind(ReflectionKind.Interface | ReflectionKind.TypeAlias)) {
      const note = GLUE_TYPES[reflection.name];
      if (!note) continue;
      reflection.comment ??= text(note);
      if (reflection.name === 'InitOutput') {
        for (const child of [...(reflection.children ?? [])]) project.removeReflection(child);
      }
    }
  });
}
