// fetchqd's settings table: defaults, parsing, the error messages, the config file reader.
#include "daemon/settings.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "support/temp_dir.h"
#include "util/strings.h"

namespace fetchq::daemon {
namespace {

using fetchq::testing::TempDir;
using fetchq::testing::write_file;

// Every field of `s`, keyed by the setting that names it, as text (lists joined by '|').
std::map<std::string, std::string> fields(const Settings& s) {
  std::map<std::string, std::string> out;
  for (const auto& info : setting_table()) {
    std::visit(
        [&](auto field) {
          const auto& v = s.*field;
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::string>) {
            out[info.name] = v;
          } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
            for (const auto& e : v) out[info.name] += e + "|";
          } else {
            out[info.name] = std::to_string(v);
          }
        },
        info.field);
  }
  return out;
}

bool is_list(const SettingInfo& info) {
  return std::holds_alternative<std::vector<std::string> Settings::*>(info.field);
}

TEST(Settings, DefaultsAreTheDocumentedValues) {
  Settings s;
  EXPECT_EQ(s.db, "");
  EXPECT_EQ(s.socket, "");
  EXPECT_EQ(s.max_parallel, 5);
  EXPECT_TRUE(s.download_roots.empty());
  EXPECT_EQ(s.log_level, "info");
  EXPECT_EQ(s.connect_timeout_s, 30);
  EXPECT_EQ(s.stall_timeout_s, 30);
  EXPECT_EQ(s.max_attempts, 8);
  EXPECT_EQ(s.give_up_after_s, 3600);
  EXPECT_EQ(s.checkpoint_interval_ms, 2000);
  EXPECT_EQ(s.block_private_addresses, 0);
  EXPECT_EQ(s.event_retention, 1000000);
  EXPECT_EQ(s.limit_rate, "0");
  EXPECT_TRUE(s.token_rules.empty());
}

TEST(Settings, EveryDefaultParsesToItself) {
  const Settings defaults;
  for (const auto& info : setting_table()) {
    if (is_list(info)) continue;  // a list's default is empty: nothing to parse
    Settings s;
    auto st = apply_setting(s, info.name, info.default_value);
    ASSERT_TRUE(st.ok()) << info.name << ": " << st.error().message;
    EXPECT_EQ(fields(s), fields(defaults)) << info.name;
    if (takes_integer(info)) {
      EXPECT_NE(std::string(info.default_value), "") << info.name;
      EXPECT_LE(info.min, info.max) << info.name;
    }
  }
}

TEST(Settings, NamesAreUniqueAndHaveHelp) {
  std::map<std::string, int> seen;
  for (const auto& info : setting_table()) {
    EXPECT_EQ(++seen[info.name], 1) << info.name;
    EXPECT_NE(std::string(info.help), "") << info.name;
    EXPECT_EQ(find_setting(info.name), &info);
  }
  EXPECT_EQ(seen.size(), 22u);
}

TEST(Settings, SegmentedDownloadDefaults) {
  Settings s;
  EXPECT_EQ(s.connections, 0);  // adaptive
  EXPECT_EQ(s.max_connections_per_host, 16);
  EXPECT_EQ(s.max_connections, 0);  // no limit
  EXPECT_EQ(s.segment_threshold, 16L << 20);
  EXPECT_EQ(s.segment_min_size, 1L << 20);
  EXPECT_EQ(find_setting("connections")->max, 16);
}

// A table entry pointing at the wrong field would show here: each setting changes its own
// field and no other.
TEST(Settings, EachSettingSetsItsOwnFieldOnly) {
  const auto before = fields(Settings{});
  for (const auto& info : setting_table()) {
    Settings s;
    const std::string value =
        takes_integer(info) ? std::to_string(info.max) : std::string("v-") + info.name;
    ASSERT_TRUE(apply_setting(s, info.name, value).ok()) << info.name;
    auto after = fields(s);
    for (const auto& [name, text] : after) {
      if (name == info.name) {
        EXPECT_EQ(text, is_list(info) ? value + "|" : value) << name;
      } else {
        EXPECT_EQ(text, before.at(name)) << info.name << " changed " << name;
      }
    }
  }
}

TEST(Settings, ListsAppendAndUnderscoresReadAsDashes) {
  Settings s;
  ASSERT_TRUE(apply_setting(s, "download-root", "/a").ok());
  ASSERT_TRUE(apply_setting(s, "download_root", "/b").ok());
  ASSERT_TRUE(apply_setting(s, "max_parallel", "7").ok());
  EXPECT_EQ(s.download_roots, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(s.max_parallel, 7);
}

TEST(Settings, UnknownNameIsRejectedByName) {
  Settings s;
  auto st = apply_setting(s, "max_paralel", "3");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().message, "unknown setting 'max_paralel'");
  EXPECT_EQ(find_setting("no-such-setting"), nullptr);
}

TEST(Settings, BadIntegerNamesTheSettingAndItsBounds) {
  for (const auto& info : setting_table()) {
    if (!takes_integer(info)) continue;
    for (const std::string& bad :
         {std::string("x"), std::string(""), std::string("5 "), std::string("1.5"),
          std::to_string(info.min - 1), std::to_string(info.max + 1),
          std::string("99999999999999999999")}) {
      Settings s;
      auto st = apply_setting(s, info.name, bad);
      ASSERT_FALSE(st.ok()) << info.name << " = " << bad;
      EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
      EXPECT_EQ(st.error().message, std::string(info.name) + " must be an integer from " +
                                        std::to_string(info.min) + " to " +
                                        std::to_string(info.max) + ", not '" + bad + "'");
      EXPECT_EQ(fields(s), fields(Settings{})) << "a rejected value changed " << info.name;
    }
    Settings s;
    EXPECT_TRUE(apply_setting(s, info.name, std::to_string(info.min)).ok()) << info.name;
  }
}

TEST(Settings, ConfigFileLinesCommentsQuotesAndLists) {
  TempDir dir;
  const std::string path = dir / "fetchqd.conf";
  write_file(path,
             "# a comment\n"
             "\n"
             "  max-parallel = 12  \r\n"
             "log_level=\"debug\"\n"
             "download-root = /srv/a\n"
             "\t# indented comment\n"
             "download-root = /srv/b\n"
             "token-rule = example.org env:TOKEN\n");
  Settings s;
  auto st = load_config_file(s, path);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(s.max_parallel, 12);
  EXPECT_EQ(s.log_level, "debug");
  EXPECT_EQ(s.download_roots, (std::vector<std::string>{"/srv/a", "/srv/b"}));
  EXPECT_EQ(s.token_rules, (std::vector<std::string>{"example.org env:TOKEN"}));
  // Flags come after the file: a list gets both, a single value is replaced.
  ASSERT_TRUE(apply_setting(s, "download-root", "/srv/c").ok());
  ASSERT_TRUE(apply_setting(s, "max-parallel", "3").ok());
  EXPECT_EQ(s.download_roots.size(), 3u);
  EXPECT_EQ(s.max_parallel, 3);
}

TEST(Settings, ConfigFileErrorsNameTheFileAndLine) {
  TempDir dir;
  const std::string path = dir / "bad.conf";
  Settings s;
  write_file(path, "max-parallel = 2\nverbose\n");
  auto st = load_config_file(s, path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, path + ":2: expected 'name = value'");

  write_file(path, "# x\nno-such = 1\n");
  st = load_config_file(s, path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().message, path + ":2: unknown setting 'no-such'");

  write_file(path, "\n\nstall-timeout = 0\n");
  st = load_config_file(s, path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message,
            path + ":3: stall-timeout must be an integer from 1 to 3600, not '0'");

  st = load_config_file(s, dir / "missing.conf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kIo);
  EXPECT_EQ(st.error().message,
            "cannot read the config file " + (dir / "missing.conf") + ": No such file or directory");
  // The default file may be missing; one that is there is read.
  bool found = true;
  EXPECT_TRUE(load_config_file(s, dir / "missing.conf", /*missing_ok=*/true, &found).ok());
  EXPECT_FALSE(found);
  write_file(dir / "there.conf", "max-parallel = 7\n");
  ASSERT_TRUE(load_config_file(s, dir / "there.conf", /*missing_ok=*/true, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(s.max_parallel, 7);
}

TEST(Strings, TrimAndLower) {
  EXPECT_EQ(util::trim("  a b \t\r\n"), "a b");
  EXPECT_EQ(util::trim("\t\r\n "), "");
  EXPECT_EQ(util::trim(""), "");
  EXPECT_EQ(util::trim("x"), "x");
  EXPECT_EQ(util::lower("HTTPS://Ex.ORG/Ä"), "https://ex.org/Ä");
}

}  // namespace
}  // namespace fetchq::daemon
