// fetchq's config file and `fetchq config`.
#include "cli/user_config.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "control/client.h"
#include "util/config_file.h"
#include "util/fs.h"

namespace fetchq::cli {
namespace {

struct Name {
  const char* name;
  const char* env;  // an environment variable that wins over the file, or null
  const char* help;
};

const std::vector<Name>& names() {
  static const std::vector<Name> kNames = {
      {"socket", "FETCHQ_SOCKET", "fetchqd's control socket"},
      {"dir", nullptr, "folder that add and get download into"},
      {"connections", nullptr, "connections for one big file"},
      {"parallel", nullptr, "downloads at once of fetchq get"},
      {"priority", nullptr, "priority of new jobs"},
      {"if-exists", nullptr, "what to do when the file exists"},
      {"state", nullptr, "state database of fetchq get"},
      {"retention", nullptr, "age after which fetchq get forgets its completed jobs"},
      {"limit-rate", nullptr, "bandwidth limit of fetchq get's runs and of new jobs"},
      {"user-agent", nullptr, "User-Agent of new jobs"},
      {"proxy", nullptr, "proxy of fetchq get"},
      {"ca-cert", nullptr, "CA certificates fetchq get trusts"},
  };
  return kNames;
}

const char* env_of(const std::string& name) {
  for (const auto& n : names()) {
    if (name == n.name && n.env) {
      const char* v = std::getenv(n.env);
      return v && *v ? n.env : nullptr;
    }
  }
  return nullptr;
}

// What a name is without flag, environment or file.
std::string default_of(const std::string& name) {
  if (name == "socket") return control::default_socket_path();
  if (name == "dir") return util::absolute_path(".");
  if (name == "connections") return "fetchqd's setting for add (adaptive unless set), adaptive for get";
  if (name == "parallel") return "5";
  if (name == "priority") return "10";
  if (name == "if-exists") return "error";
  if (name == "state") return default_state_path();
  if (name == "retention") return "30d";
  if (name == "limit-rate") return "0 (none)";
  if (name == "user-agent") return "fetchq's own";
  if (name == "proxy") return "from $https_proxy, $http_proxy, $ALL_PROXY";
  if (name == "ca-cert") return "the system's";
  return "";
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The last line of the file for each name.
std::map<std::string, const ConfigSetting*> last_of(const UserConfig& c) {
  std::map<std::string, const ConfigSetting*> m;
  for (const auto& s : c.settings) m[s.name] = &s;
  return m;
}

struct ConfigArgs {
  bool json = false;
};

int run_config(const ConfigArgs& a) {
  auto cfg = load_user_config(user_config_path());
  if (!cfg) {
    print_error(cfg.error().message);
    return kExitUsage;
  }
  // Every value is tried on each command that takes it, with that command's own checks.
  CLI::App all;
  std::function<int()> unused;
  add_get_command(all, &unused);
  add_client_commands(all, &unused);
  for (CLI::App* cmd : all.get_subcommands([](const CLI::App*) { return true; })) {
    if (auto st = apply_user_config(cfg.value(), *cmd); !st) {
      print_error(st.error().message);
      return kExitUsage;
    }
  }
  const auto last = last_of(cfg.value());
  nlohmann::ordered_json js;
  js["file"] = cfg.value().path;
  js["found"] = cfg.value().found;
  nlohmann::ordered_json settings = nlohmann::ordered_json::object();
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : names()) {
    std::string value, from;
    if (const char* e = env_of(n.name)) {
      value = env(e);
      from = std::string("environment ") + e;
    } else if (auto it = last.find(n.name); it != last.end()) {
      value = it->second->value;
      from = cfg.value().path + ":" + std::to_string(it->second->line);
    } else {
      value = default_of(n.name);
      from = "default";
    }
    settings[n.name] = {{"value", value}, {"from", from}};
    rows.push_back({n.name, value, from});
  }
  js["settings"] = settings;
  if (a.json) {
    std::cout << js.dump() << "\n";
    return kExitOk;
  }
  std::cout << "config file " << cfg.value().path << (cfg.value().found ? "" : " (none there)") << "\n";
  size_t w0 = 0, w1 = 0;
  for (const auto& r : rows) {
    w0 = std::max(w0, r[0].size());
    w1 = std::max(w1, r[1].size());
  }
  for (const auto& r : rows) {
    std::cout << r[0] << std::string(w0 - r[0].size() + 2, ' ') << r[1]
              << std::string(w1 - r[1].size() + 2, ' ') << r[2] << "\n";
  }
  return kExitOk;
}

}  // namespace

const std::vector<std::string>& user_config_names() {
  static const std::vector<std::string> kList = [] {
    std::vector<std::string> v;
    for (const auto& n : names()) v.push_back(n.name);
    return v;
  }();
  return kList;
}

std::string user_config_path() {
  if (auto p = env("FETCHQ_CONFIG"); !p.empty()) return p;
  if (auto x = env("XDG_CONFIG_HOME"); !x.empty()) return x + "/fetchq/config";
  return env("HOME") + "/.config/fetchq/config";
}

Result<UserConfig> load_user_config(const std::string& path) {
  UserConfig c;
  c.path = path;
  const std::string home = env("HOME");
  auto st = util::read_config_file(
      path,
      [&c, &home](const std::string& name, const std::string& value, int line) -> Status {
        const auto& known = user_config_names();
        if (std::find(known.begin(), known.end(), name) == known.end()) {
          std::string list;
          for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
          return make_error(ErrorCode::kInvalidArgument,
                            "unknown setting '" + name + "'; the settings are " + list);
        }
        std::string v = value;
        if (v.rfind("~/", 0) == 0 && !home.empty()) v = home + v.substr(1);
        c.settings.push_back({name, v, line});
        return Ok{};
      },
      /*missing_ok=*/true, &c.found);
  if (!st) return st.error();
  return c;
}

Status apply_user_config(const UserConfig& config, CLI::App& cmd) {
  for (const auto& [name, s] : last_of(config)) {
    CLI::Option* opt = cmd.get_option_no_throw("--" + name);
    if (!opt || opt->count() > 0 || env_of(name)) continue;
    if (name == "dir") {  // -o names the file itself
      if (const CLI::Option* o = cmd.get_option_no_throw("--output"); o && o->count() > 0) continue;
    }
    try {
      opt->add_result(s->value);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return make_error(ErrorCode::kInvalidArgument, config.path + ":" + std::to_string(s->line) +
                                                         ": " + name + ": " + e.what());
    }
  }
  return Ok{};
}

void add_config_command(CLI::App& app, std::function<int()>* run) {
  auto a = std::make_shared<ConfigArgs>();
  auto* cmd = app.add_subcommand(
      "config", "Print the settings in effect and where each comes from (" + user_config_path() + ")");
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->callback([a, run] { *run = [a] { return run_config(*a); }; });
}

}  // namespace fetchq::cli
