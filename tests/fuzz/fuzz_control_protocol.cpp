// libFuzzer target: the control socket's JSON-RPC parsing. parse_request must either return a
// request whose params is an object or fill a well-formed JSON-RPC error answer; parse_join and
// parse_subscribe and parse_list_jobs must check their parameters and never throw.
//
// Input: one request line, e.g. {"jsonrpc":"2.0","id":1,"method":"join","params":{"ids":[1]}}.
// The same bytes, if they are JSON, are also handed to parse_join/parse_subscribe as params.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "control/protocol.h"

namespace {

using fetchq::control::json;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_control_protocol: invariant failed: %s\n", what);
    std::abort();
  }
}

bool valid_id(const json& id) { return id.is_null() || id.is_string() || id.is_number(); }

void check_params(const json& params) {
  using namespace fetchq::control;
  std::string error;
  if (auto jp = parse_join(params, &error)) {
    check(error.empty(), "parse_join succeeded but set an error");
    if (jp->timeout_s) check(*jp->timeout_s >= 0, "join timeout >= 0");
    const json& ids = params.is_object() && params.contains("ids") ? params["ids"] : json();
    check(jp->ids.size() == (ids.is_array() ? ids.size() : 0), "join keeps every id");
  } else {
    check(!error.empty(), "parse_join failed without a message");
  }
  error.clear();
  if (auto since = parse_subscribe(params, &error)) {
    check(error.empty(), "parse_subscribe succeeded but set an error");
    check(*since >= -1, "subscribe since >= -1");
    if (*since == -1) {
      check(!params.is_object() || !params.contains("since") || params["since"].is_null(),
            "since -1 only when absent");
    }
  } else {
    check(!error.empty(), "parse_subscribe failed without a message");
  }
  error.clear();
  if (auto f = parse_list_jobs(params, &error)) {
    check(error.empty(), "parse_list_jobs succeeded but set an error");
    for (const char* k : {"after_id", "limit"}) {
      // A number past INT64_MAX would have wrapped to a negative one.
      const json& v = params.is_object() && params.contains(k) ? params[k] : json();
      check(!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t{INT64_MAX},
            "list_jobs refuses numbers past int64");
    }
  } else {
    check(!error.empty(), "parse_list_jobs failed without a message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fetchq::control;
  const std::string_view line(reinterpret_cast<const char*>(data), size);

  json error_response = "untouched";
  const auto req = parse_request(line, &error_response);
  if (!req) {
    check(error_response.is_object(), "the error answer is an object");
    check(error_response.value("jsonrpc", "") == "2.0", "the error answer has jsonrpc 2.0");
    check(error_response.contains("id") && valid_id(error_response["id"]),
          "the error answer has an id (null, string or number)");
    check(!error_response.contains("result"), "the error answer has no result");
    const auto err = error_response.find("error");
    check(err != error_response.end() && err->is_object(), "the error answer has an error object");
    const auto code = err->find("code");
    check(code != err->end() && code->is_number_integer(), "the error code is an integer");
    const int64_t c = code->get<int64_t>();
    check(c == kParseError || c == kInvalidRequest || c == kInvalidParams,
          "the error code is -32700, -32600 or -32602");
    check(err->contains("message") && (*err)["message"].is_string(), "the error has a message");
    // The server writes the answer as one line: it must serialise (valid UTF-8, no throw).
    const std::string out = error_response.dump();
    check(out.find('\n') == std::string::npos, "the error answer is one line");
  } else {
    check(req->params.is_object(), "params is an object");
    check(valid_id(req->id), "the id is null, a string or a number");
    check_params(req->params);
    (void)rpc_result(req->id, json::object()).dump();
    // As dispatch answers an unknown method; the cut may split a UTF-8 sequence, which is why
    // the server serialises with error_handler_t::replace.
    const json unknown =
        rpc_error(req->id, kMethodNotFound, "unknown method '" + req->method.substr(0, 100) + "'");
    (void)unknown.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // The same bytes as the params of join and subscribe, whatever JSON they are.
  const json doc = json::parse(line, nullptr, false);
  if (!doc.is_discarded()) check_params(doc);
  return 0;
}
