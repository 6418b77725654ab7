// Unit tests for choosing a safe download file name (fetchq::files::file_name).
#include "files/file_name.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

namespace fetchq::files {
namespace {

using std::optional;
using std::string;

// --- percent_decode -----------------------------------------------------------

TEST(PercentDecode, DecodesValidEscapes) {
  EXPECT_EQ(percent_decode("a%20b%2Fc"), "a b/c");
  EXPECT_EQ(percent_decode("%e2%82%ac"), "\xE2\x82\xAC");
}

TEST(PercentDecode, KeepsInvalidEscapesLiterally) {
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%zz%41"), "%zzA");
  EXPECT_EQ(percent_decode(""), "");
}

TEST(PercentDecode, DecodesNulToARealByte) {
  // Decoding must not truncate: the safety check has to see the NUL.
  EXPECT_EQ(percent_decode("a%00b"), string("a\0b", 3));
}

// --- filename_from_content_disposition ---------------------------------------

TEST(ContentDisposition, ExtendedUtf8) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=UTF-8''%E2%82%AC%20rates.txt"),
            optional<string>("\xE2\x82\xAC rates.txt"));
}

TEST(ContentDisposition, ExtendedPreferredOverPlainInEitherOrder) {
  EXPECT_EQ(filename_from_content_disposition(
                "attachment; filename=\"plain.txt\"; filename*=UTF-8''ext.txt"),
            optional<string>("ext.txt"));
  EXPECT_EQ(filename_from_content_disposition(
                "attachment; filename*=UTF-8''ext.txt; filename=\"plain.txt\""),
            optional<string>("ext.txt"));
}

TEST(ContentDisposition, ExtendedWithLanguageTag) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=utf-8'en'a%20b.txt"),
            optional<string>("a b.txt"));
}

TEST(ContentDisposition, ExtendedIso88591IsConvertedToUtf8) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=iso-8859-1'en'%A3%20rates.txt"),
            optional<string>("\xC2\xA3 rates.txt"));
}

TEST(ContentDisposition, UndecodableExtendedFallsBackToPlain) {
  // Unknown charset.
  EXPECT_EQ(filename_from_content_disposition(
                "attachment; filename*=KOI8-R''%C1.txt; filename=plain.txt"),
            optional<string>("plain.txt"));
  // Invalid UTF-8.
  EXPECT_EQ(filename_from_content_disposition(
                "attachment; filename*=UTF-8''%FF%FE.txt; filename=plain.txt"),
            optional<string>("plain.txt"));
  // Missing the charset'lang' part.
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=ext.txt; filename=plain.txt"),
            optional<string>("plain.txt"));
  // Undecodable with nothing to fall back on.
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=UTF-8''%C0%AF"), std::nullopt);
}

TEST(ContentDisposition, QuotedFilenameWithEscapes) {
  EXPECT_EQ(filename_from_content_disposition(R"(attachment; filename="say \"hi\".txt")"),
            optional<string>("say \"hi\".txt"));
  EXPECT_EQ(filename_from_content_disposition(R"(attachment; filename="a\\b")"),
            optional<string>("a\\b"));
  // A ';' inside quotes does not end the parameter.
  EXPECT_EQ(filename_from_content_disposition(R"(attachment; filename="a;b.txt"; size=3)"),
            optional<string>("a;b.txt"));
}

TEST(ContentDisposition, UnquotedToken) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename=report.pdf"),
            optional<string>("report.pdf"));
  EXPECT_EQ(filename_from_content_disposition("inline;filename=report.pdf;size=10"),
            optional<string>("report.pdf"));
}

TEST(ContentDisposition, CaseInsensitiveNamesAndWhitespace) {
  EXPECT_EQ(filename_from_content_disposition("Attachment ;  FileName  =  \"x.bin\"  ; "),
            optional<string>("x.bin"));
  EXPECT_EQ(filename_from_content_disposition("attachment;\tFILENAME*  =  UTF-8''y.bin"),
            optional<string>("y.bin"));
}

TEST(ContentDisposition, FirstOccurrenceWins) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename=a.txt; filename=b.txt"),
            optional<string>("a.txt"));
}

TEST(ContentDisposition, DoesNotJudgeSafety) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename=\"../evil\""),
            optional<string>("../evil"));
}

TEST(ContentDisposition, GarbageYieldsNulloptOrSomethingHarmless) {
  EXPECT_EQ(filename_from_content_disposition(""), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment"), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition(";;;;"), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("===;=;=="), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment; name=x.txt"), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment; filenamex=x.txt"), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*="), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=UTF-8''"), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition(string("\0\0\0", 3)), std::nullopt);
  // Unterminated quote and trailing backslash: tolerated, must not crash.
  EXPECT_EQ(filename_from_content_disposition("attachment; filename=\"abc"), optional<string>("abc"));
  EXPECT_EQ(filename_from_content_disposition("attachment; filename=\"abc\\"), optional<string>("abc"));
  EXPECT_EQ(filename_from_content_disposition("filename="), optional<string>(""));
}

// --- filename_from_url --------------------------------------------------------

TEST(UrlName, PlainPath) {
  EXPECT_EQ(filename_from_url("https://example.com/files/model.bin"), optional<string>("model.bin"));
}

TEST(UrlName, StripsQueryAndFragment) {
  EXPECT_EQ(filename_from_url("https://h/a/b.tar.gz?token=x/y#frag/z"), optional<string>("b.tar.gz"));
  EXPECT_EQ(filename_from_url("https://h/a/b.txt#x?y"), optional<string>("b.txt"));
}

TEST(UrlName, TrailingSlashUsesLastNonEmptySegment) {
  EXPECT_EQ(filename_from_url("https://h/dir/sub/"), optional<string>("sub"));
  EXPECT_EQ(filename_from_url("https://h/dir//"), optional<string>("dir"));
}

TEST(UrlName, PercentDecodes) {
  EXPECT_EQ(filename_from_url("https://h/my%20file%E2%82%AC.txt"),
            optional<string>("my file\xE2\x82\xAC.txt"));
}

TEST(UrlName, NoPath) {
  EXPECT_EQ(filename_from_url("https://example.com"), std::nullopt);
  EXPECT_EQ(filename_from_url("https://example.com/"), std::nullopt);
  EXPECT_EQ(filename_from_url("https://example.com?x=/a.txt"), std::nullopt);
  EXPECT_EQ(filename_from_url("https://example.com#/a.txt"), std::nullopt);
  EXPECT_EQ(filename_from_url(""), std::nullopt);
}

TEST(UrlName, AuthorityIsNeverTheName) {
  EXPECT_EQ(filename_from_url("https://user:pw@host.example:8443/x.iso"), optional<string>("x.iso"));
  EXPECT_EQ(filename_from_url("https://host.example:8443"), std::nullopt);
}

// --- is_safe_file_name --------------------------------------------------------

TEST(SafeName, AcceptsOrdinaryNames) {
  EXPECT_TRUE(is_safe_file_name("model.bin"));
  EXPECT_TRUE(is_safe_file_name(".bashrc"));
  EXPECT_TRUE(is_safe_file_name("...a"));
  EXPECT_TRUE(is_safe_file_name("\xE2\x82\xAC rates.txt"));
  EXPECT_TRUE(is_safe_file_name("ab:c"));  // a colon past the drive position is fine on POSIX
  EXPECT_TRUE(is_safe_file_name("1:2"));   // not a drive letter
  EXPECT_TRUE(is_safe_file_name(string(kMaxNameBytes, 'a')));
}

TEST(SafeName, RefusesUnsafeNames) {
  EXPECT_FALSE(is_safe_file_name(""));
  EXPECT_FALSE(is_safe_file_name("."));
  EXPECT_FALSE(is_safe_file_name(".."));
  EXPECT_FALSE(is_safe_file_name("..."));
  EXPECT_FALSE(is_safe_file_name(" . "));
  EXPECT_FALSE(is_safe_file_name("a/b"));
  EXPECT_FALSE(is_safe_file_name("a\\b"));
  EXPECT_FALSE(is_safe_file_name(string("a\0b", 3)));
  EXPECT_FALSE(is_safe_file_name("a\x01" "b"));
  EXPECT_FALSE(is_safe_file_name("a\x1f" "b"));
  EXPECT_FALSE(is_safe_file_name("a\x7f" "b"));
  EXPECT_FALSE(is_safe_file_name("C:evil"));
  EXPECT_FALSE(is_safe_file_name("c:"));
  EXPECT_FALSE(is_safe_file_name("z:b"));
  EXPECT_FALSE(is_safe_file_name(string(kMaxNameBytes + 1, 'a')));
}

TEST(SafeName, RefusesInvalidUtf8) {
  EXPECT_FALSE(is_safe_file_name("\xFF"));
  EXPECT_FALSE(is_safe_file_name("a\xE2\x82"));       // truncated
  EXPECT_FALSE(is_safe_file_name("\xC0\xAF"));        // overlong '/'
  EXPECT_FALSE(is_safe_file_name("\xED\xA0\x80"));    // surrogate
  EXPECT_FALSE(is_safe_file_name("\xF4\x90\x80\x80"));  // above U+10FFFF
}

// --- choose_file_name ---------------------------------------------------------

constexpr std::string_view kFallbackUrl = "http://h/files/fallback.bin";

void expect_contained(const string& name) {
  EXPECT_TRUE(is_safe_file_name(name)) << name;
  EXPECT_EQ(name.find('/'), string::npos) << name;
  EXPECT_EQ(name.find('\\'), string::npos) << name;
  EXPECT_NE(name, ".");
  EXPECT_NE(name, "..");
}

TEST(ChooseName, HeaderNameWins) {
  EXPECT_EQ(choose_file_name("attachment; filename=\"report.pdf\"", kFallbackUrl), "report.pdf");
}

TEST(ChooseName, UrlWhenNoHeaderOrNoFilename) {
  EXPECT_EQ(choose_file_name(std::nullopt, kFallbackUrl), "fallback.bin");
  EXPECT_EQ(choose_file_name("inline", kFallbackUrl), "fallback.bin");
}

TEST(ChooseName, DownloadWhenNothingUsable) {
  EXPECT_EQ(choose_file_name(std::nullopt, "https://example.com/"), "download");
  EXPECT_EQ(choose_file_name("attachment; filename=..", "https://example.com/.."), "download");
}

TEST(ChooseName, UnsafeHeaderNamesFallBackToUrlName) {
  const string long_name(300, 'x');
  const std::string_view unsafe[] = {
      "../evil", "..\\evil", "sub/evil", "sub\\evil", "C:\\evil", "C:evil", "/evil", ".", "..", "",
      "a\x01" "b", "a\nb", long_name,
  };
  for (std::string_view bad : unsafe) {
    SCOPED_TRACE(string(bad));
    // Both the quoted form and the RFC 8187 form (percent-encoded) must be refused.
    string quoted = "attachment; filename=\"";
    for (char c : bad) {
      if (c == '"' || c == '\\') quoted.push_back('\\');
      quoted.push_back(c);
    }
    quoted += "\"";
    string extended = "attachment; filename*=UTF-8''";
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : bad) {
      const auto b = static_cast<unsigned char>(c);
      extended += '%';
      extended += kHex[b >> 4];
      extended += kHex[b & 0xF];
    }
    for (const string& header : {quoted, extended}) {
      const string name = choose_file_name(header, kFallbackUrl);
      expect_contained(name);
      EXPECT_EQ(name, "fallback.bin") << header;
    }
  }
}

TEST(ChooseName, NulInHeaderNameFallsBack) {
  const string header("attachment; filename*=UTF-8''a%00b", 35);
  EXPECT_EQ(choose_file_name(header, kFallbackUrl), "fallback.bin");
}

TEST(ChooseName, PercentEncodedTraversalInUrl) {
  for (std::string_view url : {"http://h/%2E%2E", "http://h/a%2Fb", "http://h/%2e", "http://h/..%5C..",
                               "http://h/%00", "http://h/C%3A%5Cevil", "http://h/%2F"}) {
    SCOPED_TRACE(string(url));
    const string name = choose_file_name(std::nullopt, url);
    expect_contained(name);
    EXPECT_EQ(name, "download");
  }
}

TEST(ChooseName, OverlongUrlNameFallsBackToDownload) {
  const string url = "http://h/" + string(300, 'y');
  EXPECT_EQ(choose_file_name(std::nullopt, url), "download");
}

// --- numbered_file_name -------------------------------------------------------

TEST(NumberedName, InsertsBeforeLastExtension) {
  EXPECT_EQ(numbered_file_name("a.tar.gz", 1), "a.tar.1.gz");
  EXPECT_EQ(numbered_file_name("model.bin", 2), "model.2.bin");
  EXPECT_EQ(numbered_file_name("model.bin", 1234), "model.1234.bin");
}

TEST(NumberedName, NoExtension) {
  EXPECT_EQ(numbered_file_name("readme", 1), "readme.1");
  EXPECT_EQ(numbered_file_name("name.", 3), "name..3");
}

TEST(NumberedName, HiddenFileHasNoExtension) {
  EXPECT_EQ(numbered_file_name(".bashrc", 1), ".bashrc.1");
  EXPECT_EQ(numbered_file_name(".config.json", 1), ".config.1.json");
}

TEST(NumberedName, ShortensStemToFit) {
  const string name = string(kMaxNameBytes - 4, 'a') + ".bin";  // exactly at the limit
  const string out = numbered_file_name(name, 12);
  EXPECT_EQ(out.size(), kMaxNameBytes);
  EXPECT_EQ(out, string(kMaxNameBytes - 7, 'a') + ".12.bin");
  EXPECT_TRUE(is_safe_file_name(out));
}

TEST(NumberedName, ShortensOnUtf8Boundary) {
  // 80 three-byte euro signs = 240 bytes; the cut must not split one.
  string name;
  for (int i = 0; i < 80; ++i) name += "\xE2\x82\xAC";
  const string out = numbered_file_name(name, 7);
  EXPECT_LE(out.size(), kMaxNameBytes);
  EXPECT_TRUE(is_safe_file_name(out));
  EXPECT_EQ(out.substr(out.size() - 2), ".7");
  EXPECT_EQ(out.size(), 79u * 3 + 2);
}

TEST(NumberedName, HugeExtensionIsTreatedAsStem) {
  const string name = "a." + string(kMaxNameBytes - 2, 'e');
  const string out = numbered_file_name(name, 99);
  EXPECT_LE(out.size(), kMaxNameBytes);
  EXPECT_TRUE(is_safe_file_name(out));
  EXPECT_EQ(out.substr(out.size() - 3), ".99");
}

TEST(NumberedName, ResultOfSafeNameStaysSafe) {
  for (std::string_view name : {"a", "C", "x.y", ".hidden", "\xE2\x82\xAC.txt"}) {
    for (int n : {1, 9, 10, 9999}) {
      EXPECT_TRUE(is_safe_file_name(numbered_file_name(name, n))) << name << " " << n;
    }
  }
}

}  // namespace
}  // namespace fetchq::files

namespace fetchq::files {
namespace {

using std::optional;
using std::string;
using std::string_view;

// --- broken percent-encoding, invisible format characters ---------------------------------

TEST(FileNameHoles, BrokenPercentEncodingIsNoName) {
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=UTF-8''%"), std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=UTF-8''%zz.txt"),
            std::nullopt);
  EXPECT_EQ(filename_from_content_disposition("attachment; filename*=UTF-8''ok%4"), std::nullopt);
  EXPECT_EQ(
      filename_from_content_disposition("attachment; filename*=UTF-8''%zz.txt; filename=plain.txt"),
      optional<string>("plain.txt"));
  EXPECT_EQ(filename_from_url("https://h/%zz.txt"), std::nullopt);
  EXPECT_EQ(filename_from_url("https://h/100%"), std::nullopt);
  EXPECT_EQ(choose_file_name(string_view("attachment; filename*=UTF-8''%"), "https://h/good.bin"),
            "good.bin");
  EXPECT_EQ(choose_file_name(std::nullopt, "https://h/%zz.txt"), "download");
  EXPECT_EQ(
      choose_file_name(string_view("attachment; filename*=UTF-8''%zz.txt"), "https://h/%zz.txt"),
      "download");
  // Good escapes still decode.
  EXPECT_EQ(filename_from_url("https://h/a%20b.txt"), optional<string>("a b.txt"));
}

TEST(FileNameHoles, InvisibleFormatCharactersAreRefused) {
  const char* hidden[] = {
      "\xE2\x80\xAA", "\xE2\x80\xAB", "\xE2\x80\xAC", "\xE2\x80\xAD", "\xE2\x80\xAE",  // U+202A..E
      "\xE2\x81\xA6", "\xE2\x81\xA7", "\xE2\x81\xA8", "\xE2\x81\xA9",                  // U+2066..9
      "\xE2\x80\x8E", "\xE2\x80\x8F", "\xD8\x9C",                   // LRM RLM ALM
      "\xE2\x80\x8B", "\xE2\x80\xA8", "\xEF\xBB\xBF", "\xC2\x85"};  // ZWSP, LSEP, BOM, NEL (C1)
  for (const char* h : hidden) {
    const string name = string("invoice") + h + "fdp.exe";
    EXPECT_FALSE(is_safe_file_name(name)) << name;
    EXPECT_EQ(
        choose_file_name(string_view("attachment; filename=\"" + name + "\""), "https://h/a.pdf"),
        "a.pdf");
  }
  // Ordinary non-ASCII stays fine: é, €, CJK, an emoji.
  EXPECT_TRUE(is_safe_file_name("caf\xC3\xA9 \xE2\x82\xAC \xE6\x97\xA5 \xF0\x9F\x98\x80.txt"));
}

TEST(FileNameHoles, NulInContentDispositionFallsBackToTheUrlName) {
  const string cd("attachment; filename=\"a\0b.txt\"", 30);
  EXPECT_EQ(choose_file_name(string_view(cd), "https://h/from-url.bin"), "from-url.bin");
  const string ext("attachment; filename*=UTF-8''a%00b.txt", 38);
  EXPECT_EQ(choose_file_name(string_view(ext), "https://h/from-url.bin"), "from-url.bin");
}

}  // namespace
}  // namespace fetchq::files
