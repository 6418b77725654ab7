// Mirrors of a job from the command line to the stored job: `fetchq add --mirror` through a
// real fetchqd, the refusal of a mirror on another host when the job holds request headers,
// and `--mirror` refused as a usage error when it could belong to several URLs. The engine's
// use of mirrors is tested with the engine.
#include <signal.h>

#include <filesystem>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class MirrorsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    Resource r;
    r.body = "mirrored data";
    server_.add("/f.bin", r);
    std::filesystem::create_directories(dir_ / "dl");
    daemon_ = std::make_unique<Process>(
        std::vector<std::string>{bin_path("fetchqd"), "--db", dir_ / "d.db", "--socket", sock(),
                                 "--download-root", dir_.path()},
        "", dir_ / "d.log");
    ASSERT_TRUE(wait_until([&] { return cli({"stats"}).rc == 0; }, 10s, 20ms))
        << read_file(dir_ / "d.log");
  }
  void TearDown() override {
    if (!daemon_) return;
    daemon_->signal(SIGTERM);
    EXPECT_EQ(daemon_->wait(20s), 0);
  }

  std::string sock() const { return dir_ / "d.sock"; }
  // fetchq ARGS, pointed at the daemon unless it is `get` (which runs its own queue).
  CliResult cli(std::vector<std::string> args) {
    const std::string n = std::to_string(++runs_);
    if (args.at(0) != "get") {
      args.push_back("--socket");
      args.push_back(sock());
    }
    args.insert(args.begin(), bin_path("fetchq"));
    return run_capture(args, dir_ / ("cli." + n + ".out"), dir_ / ("cli." + n + ".err"), 20s);
  }

  TempDir dir_;
  TestServer server_;
  std::unique_ptr<Process> daemon_;
  int runs_ = 0;
};

TEST_F(MirrorsCli, AddKeepsEveryMirrorInOrderAndShowListsThem) {
  const std::string m2 = "http://127.0.0.2:" + std::to_string(server_.port()) + "/f.bin";
  const std::string m3 = "http://localhost:" + std::to_string(server_.port()) + "/other/f.bin";
  auto add = cli(
      {"add", server_.url("/f.bin"), "-d", dir_ / "dl", "--mirror", m2, "--mirror", m3, "--json"});
  ASSERT_EQ(add.rc, 0) << add.err;
  const json added = json::parse(add.out);
  EXPECT_EQ(added["mirrors"], json::array({m2, m3}));
  const std::string id = std::to_string(added.value("id", 0));
  auto show = cli({"show", id, "--json"});
  ASSERT_EQ(show.rc, 0) << show.err;
  EXPECT_EQ(json::parse(show.out)["mirrors"], json::array({m2, m3}));
  auto human = cli({"show", id});
  ASSERT_EQ(human.rc, 0) << human.err;
  EXPECT_NE(human.out.find("mirror:        " + m2 + "\n"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("mirror:        " + m3 + "\n"), std::string::npos) << human.out;
  // A job without mirrors shows an empty list, and no mirror line.
  auto plain = cli({"add", server_.url("/f.bin"), "-o", dir_ / "dl/plain.bin", "--json"});
  ASSERT_EQ(plain.rc, 0) << plain.err;
  EXPECT_EQ(json::parse(plain.out)["mirrors"], json::array());
  auto plain_human = cli({"show", std::to_string(json::parse(plain.out).value("id", 0))});
  EXPECT_EQ(plain_human.out.find("mirror:"), std::string::npos) << plain_human.out;
}

TEST_F(MirrorsCli, AMirrorOnAnotherHostIsRefusedWhenTheJobHoldsHeaders) {
  const std::string other = "http://127.0.0.2:" + std::to_string(server_.port()) + "/f.bin";
  auto refused = cli({"add", server_.url("/f.bin"), "-d", dir_ / "dl", "--header", "X-Api-Key: k",
                      "--mirror", other});
  EXPECT_EQ(refused.rc, 4) << refused.err;  // a refused request (docs/reference.md, exit status)
  EXPECT_NE(refused.err.find("never sent elsewhere"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find(other), std::string::npos) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  auto list = cli({"list", "--json"});
  ASSERT_EQ(list.rc, 0) << list.err;
  EXPECT_EQ(json::parse(list.out), json::array());  // nothing was stored
  // On the source's own origin the same mirror is taken.
  const std::string same = server_.url("/copy/f.bin");
  auto taken = cli({"add", server_.url("/f.bin"), "-d", dir_ / "dl", "--header", "X-Api-Key: k",
                    "--mirror", same, "--json"});
  ASSERT_EQ(taken.rc, 0) << taken.err;
  EXPECT_EQ(json::parse(taken.out)["mirrors"], json::array({same}));
  // A user name or password in a mirror is refused, its password never repeated.
  auto userinfo =
      cli({"add", server_.url("/f.bin"), "-d", dir_ / "dl", "--mirror",
           "http://u:pw-s3cret@127.0.0.2:" + std::to_string(server_.port()) + "/f.bin"});
  EXPECT_EQ(userinfo.rc, 4) << userinfo.err;
  EXPECT_NE(userinfo.err.find("user name or password"), std::string::npos) << userinfo.err;
  EXPECT_EQ(userinfo.err.find("pw-s3cret"), std::string::npos) << userinfo.err;
}

TEST_F(MirrorsCli, MirrorWithSeveralUrlsIsAUsageError) {
  const std::string m = "http://127.0.0.2:" + std::to_string(server_.port()) + "/f.bin";
  const std::string list = dir_ / "urls.txt";
  write_file(list, server_.url("/f.bin") + "\n");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"get", server_.url("/f.bin"), server_.url("/g.bin"), "--mirror", m, "-d", dir_ / "dl",
            "--state", dir_ / "s.db"},
           {"get", "-i", list, "--mirror", m, "-d", dir_ / "dl", "--state", dir_ / "s.db"},
           {"add", server_.url("/f.bin"), server_.url("/g.bin"), "--mirror", m, "-d", dir_ / "dl"},
           {"add", "-i", list, "--mirror", m, "-d", dir_ / "dl"}}) {
    auto res = cli(args);
    EXPECT_EQ(res.rc, 2) << args.at(0) << " " << args.at(1) << ": " << res.err;
    EXPECT_NE(res.err.find("--mirror is for a single URL"), std::string::npos) << res.err;
    EXPECT_EQ(std::count(res.err.begin(), res.err.end(), '\n'), 1) << res.err;
  }
  EXPECT_TRUE(server_.requests().empty());
  EXPECT_EQ(json::parse(cli({"list", "--json"}).out), json::array());
}

TEST_F(MirrorsCli, GetTakesOneUrlWithMirrorsAndRefusesABadMirrorAsAUsageError) {
  auto bad = cli({"get", server_.url("/f.bin"), "--mirror", "ftp://127.0.0.2/f.bin", "-d",
                  dir_ / "dl", "--state", dir_ / "s.db"});
  EXPECT_EQ(bad.rc, 2) << bad.err;
  EXPECT_NE(bad.err.find("--mirror"), std::string::npos) << bad.err;
  auto same = cli({"get", server_.url("/f.bin"), "--mirror", server_.url("/f.bin"), "-d",
                   dir_ / "dl", "--state", dir_ / "s.db"});
  EXPECT_EQ(same.rc, 2) << same.err;
  EXPECT_NE(same.err.find("the source itself"), std::string::npos) << same.err;
  EXPECT_TRUE(server_.requests().empty());
  // A mirror the source's own server answers for: the file arrives (from the source at least).
  auto ok = cli({"get", server_.url("/f.bin"), "--mirror", server_.url("/f.bin?copy=1"), "-d",
                 dir_ / "dl", "--state", dir_ / "s.db", "-q"});
  EXPECT_EQ(ok.rc, 0) << ok.err;
  EXPECT_EQ(read_file(dir_ / "dl/f.bin"), "mirrored data");
}

}  // namespace
}  // namespace fetchq::testing
