// `fetchq get` in a real terminal: tmux runs it at 80 columns, the window is narrowed to 40 and
// widened to 200 while it runs, and what the screen shows is read back with capture-pane.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

// Columns a line of UTF-8 takes (every code point one column: the display uses no wide ones).
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

class Screen {
 public:
  explicit Screen(const TempDir& dir) : dir_(dir), server_("fetchq-test-" + std::to_string(::getpid())) {}
  ~Screen() { tmux({"kill-server"}); }

  int tmux(std::vector<std::string> args) {
    // -u: UTF-8 whatever the locale; -f /dev/null: no user tmux.conf; -L: a server of our own.
    args.insert(args.begin(), {"/usr/bin/tmux", "-u", "-f", "/dev/null", "-L", server_});
    return run_capture(args, dir_ / "tmux.out", dir_ / "tmux.err", std::chrono::seconds(10)).rc;
  }

  // The screen's lines without the blank ones below; lines tmux wrapped are joined (-J), so a
  // line wider than the window shows as one long line.
  std::vector<std::string> capture() {
    run_capture({"/usr/bin/tmux", "-u", "-L", server_, "capture-pane", "-p", "-J", "-t", "get"},
                dir_ / "pane.txt", dir_ / "pane.err", std::chrono::seconds(10));
    std::vector<std::string> lines;
    std::istringstream in(read_file(dir_ / "pane.txt"));
    for (std::string l; std::getline(in, l);) {
      while (!l.empty() && l.back() == ' ') l.pop_back();
      lines.push_back(l);
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    return lines;
  }

  // Waits until `pred` holds for the screen; returns the last capture.
  std::vector<std::string> wait_for(const std::function<bool(const std::vector<std::string>&)>& pred) {
    std::vector<std::string> shown;
    wait_until([&] { return pred(shown = capture()); }, std::chrono::seconds(20),
               std::chrono::milliseconds(100));
    return shown;
  }

 private:
  const TempDir& dir_;
  std::string server_;
};

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

bool shows(const std::vector<std::string>& lines, const std::string& what) {
  return joined(lines).find(what) != std::string::npos;
}

TEST(GetScreen, LinesFitTheTerminalAtEveryWidthAndNoOldFrameIsLeft) {
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/tmux")) << "tmux is needed (tools/install-deps.sh)";
  TempDir dir;
  TestServer server;
  std::vector<std::string> urls;
  for (int i = 1; i <= 3; ++i) {
    Resource r;
    r.body = make_body(3 << 20, 90 + i);
    r.rate_bytes_per_s = 384 << 10;  // about 8 s each
    const std::string path = "/models/shard-0000" + std::to_string(i) + ".bin";
    server.add(path, r);
    urls.push_back(server.url(path));
  }
  std::string cmd = bin_path("fetchq") + " get";
  for (const auto& u : urls) cmd += " " + u;
  cmd += " -d " + (dir / "dl") + " --state " + (dir / "state.db") + "; echo exit=$?; sleep 60";
  Screen screen(dir);
  ASSERT_EQ(screen.tmux({"new-session", "-d", "-s", "get", "-x", "80", "-y", "12", cmd}), 0)
      << read_file(dir / "tmux.err");

  // 80 columns: a line for each file with its rate, and the overall line.
  auto at80 = screen.wait_for([](const auto& l) { return shows(l, "KiB/s ") && shows(l, " left, 3 running"); });
  std::cout << "screen (80 columns):\n" << joined(at80);  // kept in the test log
  ASSERT_EQ(at80.size(), 4u) << joined(at80);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(at80[static_cast<size_t>(i - 1)].rfind("shard-0000" + std::to_string(i) + ".bin", 0), 0u)
        << joined(at80);
  }
  EXPECT_EQ(at80[3].rfind("0/3 files, ", 0), 0u) << joined(at80);
  for (const auto& l : at80) EXPECT_LE(columns(l), 80u) << l;

  // Narrowed to 40: the next frame fits, names are cut in the middle and stay apart, and the
  // wider frame before it is gone (no line is left over, none wraps).
  ASSERT_EQ(screen.tmux({"resize-window", "-t", "get", "-x", "40"}), 0);
  auto at40 = screen.wait_for([](const auto& l) {
    return l.size() == 4 && shows(l, "\u2026") && columns(l[0]) <= 40 && shows(l, " left");
  });
  std::cout << "screen (40 columns):\n" << joined(at40);  // kept in the test log
  ASSERT_EQ(at40.size(), 4u) << joined(at40);
  for (const auto& l : at40) EXPECT_LE(columns(l), 40u) << joined(at40);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_NE(at40[static_cast<size_t>(i - 1)].find("0" + std::to_string(i) + ".bin"), std::string::npos)
        << joined(at40);
  }
  EXPECT_EQ(at40[3].rfind("0/3 files, ", 0), 0u) << joined(at40);
  EXPECT_NE(at40[3].find(" left"), std::string::npos) << joined(at40);

  // Widened to 200: bars come back.
  ASSERT_EQ(screen.tmux({"resize-window", "-t", "get", "-x", "200"}), 0);
  auto at200 = screen.wait_for([](const auto& l) { return l.size() == 4 && shows(l, "] "); });
  std::cout << "screen (200 columns):\n" << joined(at200);  // kept in the test log
  ASSERT_EQ(at200.size(), 4u) << joined(at200);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(at200[i].find(" ["), std::string::npos) << joined(at200);

  // The end: the frame is cleared and one summary line says what was done.
  auto end = screen.wait_for([](const auto& l) { return shows(l, "exit="); });
  std::cout << "screen (at the end):\n" << joined(end);  // kept in the test log
  ASSERT_EQ(end.size(), 2u) << joined(end);
  EXPECT_EQ(end[0].rfind("3 files, 9.0 MiB in ", 0), 0u) << joined(end);
  EXPECT_EQ(end[1], "exit=0");
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(std::filesystem::file_size(dir / ("dl/shard-0000" + std::to_string(i) + ".bin")), 3u << 20);
  }
}

}  // namespace
}  // namespace fetchq::testing
