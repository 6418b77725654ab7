// The SQLite backend of Store. Everyone but the store's own tests opens it through store::open.
#pragma once

#include <memory>
#include <string>

#include "fetchq/result.h"
#include "store/store.h"

namespace fetchq::store {

// Opens an SQLite store: WAL mode, schema migrations in order, integrity check. A read-write
// open takes "<path>.lock" so a second process cannot write beside the first. A read-only open
// never writes, not even the -shm file when it cannot (then the main file is read alone).
// Its methods throw StoreError (never SQLite::Exception): see sqlite_error_kind.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path, OpenOptions options);

// The StoreErrorKind of an SQLite result code (primary or extended).
StoreErrorKind sqlite_error_kind(int code);

}  // namespace fetchq::store
