// Bandwidth limits as written by people (util/rate.h), and the limit-rate setting of fetchqd.
#include "util/rate.h"

#include <gtest/gtest.h>

#include "daemon/settings.h"

namespace fetchq::util {
namespace {

int64_t rate(const std::string& text) {
  std::string why;
  auto r = parse_rate(text, &why);
  EXPECT_TRUE(r.has_value()) << text << ": " << why;
  return r.value_or(-1);
}

std::string refused(const std::string& text) {
  std::string why;
  auto r = parse_rate(text, &why);
  EXPECT_FALSE(r.has_value()) << text << " read as " << r.value_or(-1);
  return why;
}

TEST(Rate, SuffixesAre1024BasedInEitherCaseAndFractionsAreTaken) {
  EXPECT_EQ(rate("0"), 0);
  EXPECT_EQ(rate("0k"), 0);
  EXPECT_EQ(rate("1000"), 1000);
  EXPECT_EQ(rate("500k"), 500 * 1024);
  EXPECT_EQ(rate("500K"), 500 * 1024);
  EXPECT_EQ(rate("5M"), 5 * 1024 * 1024);
  EXPECT_EQ(rate("5m"), 5 * 1024 * 1024);
  EXPECT_EQ(rate("1.5M"), 3 * 512 * 1024);
  EXPECT_EQ(rate(".5k"), 512);
  EXPECT_EQ(rate("2."), 2);
  EXPECT_EQ(rate("2G"), int64_t{2} << 30);
  EXPECT_EQ(rate("1024G"), kMaxRate);
}

TEST(Rate, AnythingElseIsRefusedWithAReason) {
  for (const char* bad : {"", "k", "M", ".", "-1", "+5M", "5 M", " 5M", "5MB", "5T", "5x", "1.2.3",
                          "0x10", "1e6", "nan", "inf", "5kk"}) {
    std::string why = refused(bad);
    EXPECT_NE(why.find("is not a rate"), std::string::npos) << bad << ": " << why;
  }
  EXPECT_NE(refused("1025G").find("largest"), std::string::npos);
  EXPECT_NE(refused("9999999999999999").find("largest"), std::string::npos);
  EXPECT_NE(refused("0.1").find("at least 1 byte"), std::string::npos);
  EXPECT_FALSE(parse_rate("5X", nullptr).has_value());  // no reason asked for
}

TEST(Rate, FormattedRatesReadBack) {
  EXPECT_EQ(format_rate(0), "unlimited");
  EXPECT_EQ(format_rate(1000), "1000");
  EXPECT_EQ(format_rate(500 * 1024), "500k");
  EXPECT_EQ(format_rate(3 * 512 * 1024), "1.5M");
  EXPECT_EQ(format_rate(int64_t{2} << 30), "2G");
  for (int64_t v : {int64_t{1}, int64_t{1023}, int64_t{1024}, int64_t{5} << 20, int64_t{3} << 29}) {
    EXPECT_NEAR(static_cast<double>(rate(format_rate(v))), static_cast<double>(v),
                static_cast<double>(v) * 0.01)
        << v;
  }
}

TEST(Rate, TheDaemonSettingTakesARateAndRefusesOthers) {
  daemon::Settings s;
  EXPECT_EQ(s.limit_rate, "0");
  ASSERT_TRUE(daemon::apply_setting(s, "limit-rate", "5M").ok());
  EXPECT_TRUE(daemon::validate(s).ok());
  ASSERT_TRUE(daemon::apply_setting(s, "limit_rate", "fast").ok());  // text until validate()
  auto st = daemon::validate(s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("limit-rate: 'fast' is not a rate"), std::string::npos)
      << st.error().message;
}

TEST(Rate, ScheduleWindowsParseAndTheLastThatHoldsTheTimeWins) {
  auto w = daemon::parse_rate_window("08:00-18:00 2M");
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ(w->start, 8 * 60);
  EXPECT_EQ(w->end, 18 * 60);
  EXPECT_EQ(w->limit_rate, 2 * 1024 * 1024);
  auto night = daemon::parse_rate_window("22:30-06:00 0");
  ASSERT_TRUE(night.ok());
  auto lunch = daemon::parse_rate_window("12:00-13:00 500k");
  ASSERT_TRUE(lunch.ok());
  std::vector<daemon::RateWindow> s{*w, *night, *lunch};
  EXPECT_EQ(daemon::scheduled_limit(s, 7 * 60 + 59), std::nullopt);
  EXPECT_EQ(daemon::scheduled_limit(s, 8 * 60), 2 * 1024 * 1024);
  EXPECT_EQ(daemon::scheduled_limit(s, 12 * 60 + 30), 500 * 1024);  // listed later: wins
  EXPECT_EQ(daemon::scheduled_limit(s, 17 * 60 + 59), 2 * 1024 * 1024);
  EXPECT_EQ(daemon::scheduled_limit(s, 18 * 60), std::nullopt);
  EXPECT_EQ(daemon::scheduled_limit(s, 23 * 60), 0);  // past midnight
  EXPECT_EQ(daemon::scheduled_limit(s, 5 * 60), 0);
  auto day = daemon::parse_rate_window("00:00-24:00 1M");
  ASSERT_TRUE(day.ok());
  for (int m : {0, 600, 1439}) {
    EXPECT_EQ(daemon::scheduled_limit({*day}, m), 1024 * 1024) << m;
  }
  for (const char* bad : {"", "08:00-18:00", "8:00-18:00 2M", "08:00-25:00 2M", "08:60-09:00 1M",
                          "08:00 2M", "08:00-18:00 fast", "24:01-01:00 1M", "08:00_18:00 1M"}) {
    auto r = daemon::parse_rate_window(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("rate-schedule"), std::string::npos) << bad;
    }
  }
  daemon::Settings st;
  ASSERT_TRUE(daemon::apply_setting(st, "rate-schedule", "08:00-18:00 2M").ok());
  EXPECT_TRUE(daemon::validate(st).ok());
  ASSERT_TRUE(daemon::apply_setting(st, "rate-schedule", "nine to five").ok());
  EXPECT_FALSE(daemon::validate(st).ok());
}

}  // namespace
}  // namespace fetchq::util
