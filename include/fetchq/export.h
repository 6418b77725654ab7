// FETCHQ_API marks what libfetchq.so exports: the functions and classes declared in
// include/fetchq/. The library itself is built with hidden visibility, so its internals (store,
// engine, queue, and the templates of its dependencies) stay out of the shared library's symbol
// table and cannot clash with a program's own.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define FETCHQ_API __attribute__((visibility("default")))
#else
#define FETCHQ_API
#endif
