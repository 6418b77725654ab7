// The numbered schema files, compiled into the binary from schema/*.sql.
#pragma once

#include <string>
#include <vector>

namespace fetchq::store {

struct SchemaFile {
  int version;  // NNN of NNN_name.sql; PRAGMA user_version holds the last one applied
  std::string name;
  std::string sql;
};

const std::vector<SchemaFile>& schema_files();

}  // namespace fetchq::store
