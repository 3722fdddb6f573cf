//! `Database` and `Query` (smoke's record database and its queries): plain
//! JavaScript in `src/web/helpers_full.js`, re-exported by the package as they
//! are. A JavaScript module costs a few kilobytes of minified script and no
//! wasm at all, where `web-sys` IndexedDB bindings would add their glue and
//! a Rust query engine to every page that loads the SDK; and the query's
//! predicates and projections are JavaScript functions anyway, which a
//! Rust version would have to call back into one record at a time.
//!
//! Rest serves a query as a record set (`res.query()`: one record read per
//! credit the client grants), and `response.query()` wraps the pulled
//! records in a `Query` so `where`/`select`/`orderBy`/`take`/`skip`
//! compose on the client.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/web/helpers_full.js")]
extern "C" {
    /// Records in IndexedDB (see `src/web/helpers_full.js`).
    #[wasm_bindgen(reexport)]
    pub type Database;
    /// A query over an async or sync iterable.
    #[wasm_bindgen(reexport)]
    pub type Query;
    /// `new Query(records)`.
    #[wasm_bindgen(js_name = queryOf)]
    pub(crate) fn query_of(records: JsValue) -> Query;
}
