// The tokenizer.json BPE tokenizer and --text input. Expected pieces are worked out by hand from
// the tokenizers library's documented behaviour (its own examples where it has them); the
// token-for-token comparison with tokenizers.js on real vocabularies is tests/cli/tokenizer_reference.sh.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "libess/error.h"
#include "models/text_input.h"
#include "models/tokenizer.h"
#include "test_helpers.h"

using namespace ess;
using models::Tokenizer;
using json = nlohmann::json;

namespace {

using ess::test::TempDir;

namespace fs = std::filesystem;

const std::string SP = "\xe2\x96\x81";  // ▁

// A BPE model over `tokens` (ids in order) with `merges` ("a b").
json bpe(const std::vector<std::string>& tokens, const std::vector<std::string>& merges = {}) {
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  return {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"unk_token", nullptr}, {"dropout", nullptr}};
}

json tokenizer_json(const json& model, const json& normalizer = nullptr, const json& pre = nullptr,
                    const json& post = nullptr, const json& added = json::array()) {
  return {{"version", "1.0"},     {"added_tokens", added},  {"normalizer", normalizer},
          {"pre_tokenizer", pre}, {"post_processor", post}, {"decoder", nullptr},
          {"model", model}};
}

Tokenizer make(const json& j) { return Tokenizer::from_json_text(j.dump(), "test.json"); }

std::vector<std::string> pieces(const Tokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  for (int id : t.encode(text)) out.push_back(t.id_to_token(id));
  return out;
}

using V = std::vector<std::string>;

// Every byte-level character (GPT-2's table), so byte-level models never meet an unknown.
std::vector<std::string> byte_level_alphabet() {
  std::vector<std::string> out;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const unsigned cp = printable ? b : 256 + n++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out.push_back(s);
  }
  return out;
}

json added(int id, const std::string& content, bool normalized = false, bool lstrip = false, bool rstrip = false,
           bool single_word = false) {
  return {{"id", id},         {"content", content},       {"single_word", single_word}, {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", normalized}, {"special", !normalized}};
}

}  // namespace

TEST_CASE("BPE merges the lowest rank first and, among equal ranks, the leftmost pair") {
  const V toks{"a", "b", "c", "ab", "bc", "abc", "aa"};
  for (bool pair_form : {false, true}) {
    json model = bpe(toks, {"b c", "a b", "a bc", "a a"});
    if (pair_form) model["merges"] = json::array({{"b", "c"}, {"a", "b"}, {"a", "bc"}, {"a", "a"}});
    const Tokenizer t = make(tokenizer_json(model));
    CHECK(pieces(t, "abc") == V{"abc"});      // b c (rank 0) first, then a bc
    CHECK(pieces(t, "aaa") == V{"aa", "a"});  // two equal candidates: the leftmost wins
    CHECK(pieces(t, "aab") == V{"a", "ab"});  // a b (rank 1) before a a (rank 3)
    CHECK(t.encode("") == std::vector<int>{});
  }
}

TEST_CASE("byte-level BPE: GPT-2 regex pieces, byte mapping, Oniguruma's \\s") {
  auto alphabet = byte_level_alphabet();
  auto toks = alphabet;
  for (std::string s : {"th", "the", "\xc4\xa0th"}) toks.push_back(s);  // Ġth
  const json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const Tokenizer t = make(tokenizer_json(bpe(toks, {"t h", "th e", "\xc4\xa0 th"}), nullptr, pre));
  // "the" → t h e → th e → the; "Ġthe" → Ġ th e → Ġ the (th e outranks Ġ th).
  CHECK(pieces(t, "the the") == V{"the", "\xc4\xa0", "the"});

  // Piece boundaries, seen through ignore_merges with whole pieces in the vocabulary.
  auto whole = alphabet;
  const V expected{"it", "'s", "\xc4\xa0",
                   "\xc4\xa0"
                   "a",
                   "\xc4\x8a"};  // it 's Ġ Ġa Ċ
  for (const auto& s : expected) whole.push_back(s);
  whole.push_back("\xc3\x82\xc4\xa7");                   // Âħ: the bytes C2 85 of U+0085
  whole.push_back("\xc4\xa0\xc3\xaf\xc2\xbb\xc2\xbf");   // Ġï»¿: a space and the bytes of U+FEFF
  whole.push_back("x\xc3\xb0\xc4\xb3\xc2\xbc\xc4\xa6");  // xðĳ¼Ħ: x and the bytes F0 91 BC 84 of U+11F04
  json model = bpe(whole);
  model["ignore_merges"] = true;
  const Tokenizer w = make(tokenizer_json(model, nullptr, pre));
  // U+11F04 KAWI LETTER A (Unicode 15; unassigned in PCRE2 10.42's tables) is a letter: \p{L} comes
  // from ICU, so "x" and it form one \p{L}+ piece.
  CHECK(pieces(w, "x\xf0\x91\xbc\x84") == V{"x\xc3\xb0\xc4\xb3\xc2\xbc\xc4\xa6"});
  CHECK(pieces(w, "it's  a\n") == expected);  // \s+(?!\S) leaves the last space to " a"
  // U+0085 is whitespace for Oniguruma (a piece of its own), U+FEFF is not (it joins the space
  // before it through " ?[^\s\p{L}\p{N}]+").
  CHECK(pieces(w, "a\xc2\x85") == V{"a", "\xc3\x82\xc4\xa7"});
  CHECK(pieces(w, "a \xef\xbb\xbf") == V{"a", "\xc4\xa0\xc3\xaf\xc2\xbb\xc2\xbf"});

  // add_prefix_space puts a space before the text.
  json pre2 = pre;
  pre2["add_prefix_space"] = true;
  const Tokenizer p = make(tokenizer_json(bpe(toks, {"t h", "th e", "\xc4\xa0 th"}), nullptr, pre2));
  CHECK(pieces(p, "the") == V{"\xc4\xa0", "the"});
}

TEST_CASE("Split: the five delimiter behaviours and invert (the tokenizers library's own example)") {
  const std::string text = "the-final--countdown";
  V toks{"t", "h", "e", "-",   "f",     "i",         "n",    "a",      "l",      "c",          "o",
         "u", "w", "d", "the", "final", "countdown", "the-", "final-", "-final", "-countdown", "--"};
  json model = bpe(toks);
  model["ignore_merges"] = true;
  auto split = [&](const std::string& behavior, bool invert = false) {
    const json pre = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
    return pieces(make(tokenizer_json(model, nullptr, pre)), text);
  };
  CHECK(split("Removed") == V{"the", "final", "countdown"});
  CHECK(split("Isolated") == V{"the", "-", "final", "-", "-", "countdown"});
  CHECK(split("MergedWithPrevious") == V{"the-", "final-", "-", "countdown"});
  CHECK(split("MergedWithNext") == V{"the", "-final", "-", "-countdown"});
  CHECK(split("Contiguous") == V{"the", "-", "final", "--", "countdown"});
  CHECK(split("Removed", true) == V{"-", "-", "-"});
  // A regex pattern: the same as the literal.
  const json pre = {{"type", "Split"}, {"pattern", {{"Regex", "-+"}}}, {"behavior", "Isolated"}, {"invert", false}};
  CHECK(pieces(make(tokenizer_json(model, nullptr, pre)), text) == V{"the", "-", "final", "--", "countdown"});
}

TEST_CASE("Metaspace: replacement, prepend schemes, split on ▁ merged with the next piece") {
  V toks{SP,
         "H",
         "e",
         "y",
         "f",
         "r",
         "i",
         "n",
         "d",
         "!",
         "<s>",
         SP + "Hey",
         SP + "friend!",
         "Hey",
         SP + "Hey" + SP + SP + SP + "friend!"};
  json model = bpe(toks);
  model["ignore_merges"] = true;
  auto run = [&](const std::string& scheme, bool split, const std::string& text) {
    const json pre = {{"type", "Metaspace"}, {"replacement", SP}, {"prepend_scheme", scheme}, {"split", split}};
    return pieces(make(tokenizer_json(model, nullptr, pre, nullptr, json::array({added(10, "<s>")}))), text);
  };
  // The library's test multiple_spaces: "Hey   friend!" → ▁Hey, ▁, ▁, ▁friend!
  CHECK(run("always", true, "Hey   friend!") == V{SP + "Hey", SP, SP, SP + "friend!"});
  CHECK(run("always", false, "Hey   friend!") == V{SP + "Hey" + SP + SP + SP + "friend!"});
  // "first": only a piece at the very start of the text gets ▁ (not one after an added token).
  CHECK(run("first", false, "<s>Hey") == V{"<s>", "Hey"});
  CHECK(run("always", false, "<s>Hey") == V{"<s>", SP + "Hey"});
  CHECK(run("first", false, "Hey") == V{SP + "Hey"});
  CHECK(run("never", false, "Hey") == V{"Hey"});
}

TEST_CASE("SentencePiece-style BPE: Prepend/Replace normalizer, byte fallback, unk and fuse_unk") {
  const json norm = {
      {"type", "Sequence"},
      {"normalizers", json::array({json{{"type", "Prepend"}, {"prepend", SP}},
                                   json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", SP}}})}};
  V toks{"<unk>", "<s>", "</s>", SP, "a", "b", SP + "a"};
  for (int b = 0; b < 256; ++b) {
    char code[8];
    std::snprintf(code, sizeof code, "<0x%02X>", b);
    toks.push_back(code);
  }
  json model = bpe(toks, {SP + " a"});
  model["byte_fallback"] = true;
  model["unk_token"] = "<unk>";
  const Tokenizer t = make(tokenizer_json(model, norm));
  CHECK(pieces(t, "a bé") == V{SP + "a", SP, "b", "<0xC3>", "<0xA9>"});  // é = C3 A9, one token per byte

  json small = bpe({"<unk>", SP, "a"});
  small["unk_token"] = "<unk>";
  small["fuse_unk"] = true;
  CHECK(pieces(make(tokenizer_json(small, norm)), "aéü a") == V{SP, "a", "<unk>", SP, "a"});
  small["fuse_unk"] = false;
  CHECK(pieces(make(tokenizer_json(small, norm)), "aéü a") == V{SP, "a", "<unk>", "<unk>", SP, "a"});
  small["unk_token"] = nullptr;  // no unk token: unknown characters are dropped, as upstream
  CHECK(pieces(make(tokenizer_json(small, norm)), "aéü a") == V{SP, "a", SP, "a"});
}

TEST_CASE("added tokens: leftmost-longest, raw vs normalized, lstrip/rstrip, single_word") {
  V toks{"x", "y", "a", "b", "c", " ", "h", "e", "l", "o", "<a>", "<a><b>", "<m>", "hello", "ab", "<BIG>"};
  const json lower = {{"type", "Lowercase"}};
  {
    const Tokenizer t = make(
        tokenizer_json(bpe(toks), nullptr, nullptr, nullptr, json::array({added(10, "<a>"), added(11, "<a><b>")})));
    CHECK(pieces(t, "x<a><b>y<a>") == V{"x", "<a><b>", "y", "<a>"});
  }
  {  // normalized=false: matched in the raw text; normalized=true: after lowercasing
    const Tokenizer t = make(tokenizer_json(bpe(toks), lower, nullptr, nullptr,
                                            json::array({added(15, "<BIG>"), added(13, "hello", true)})));
    CHECK(pieces(t, "A<BIG>HELLO") == V{"a", "<BIG>", "hello"});
  }
  {
    const Tokenizer t =
        make(tokenizer_json(bpe(toks), nullptr, nullptr, nullptr, json::array({added(12, "<m>", false, true, true)})));
    CHECK(pieces(t, "a  <m>  b") == V{"a", "<m>", "b"});
    const Tokenizer plain = make(tokenizer_json(bpe(toks), nullptr, nullptr, nullptr, json::array({added(12, "<m>")})));
    CHECK(pieces(plain, "a <m> b") == V{"a", " ", "<m>", " ", "b"});
  }
  {
    const Tokenizer t = make(tokenizer_json(bpe(toks), nullptr, nullptr, nullptr,
                                            json::array({added(14, "ab", false, false, false, true)})));
    CHECK(pieces(t, "ab cab ab") == V{"ab", " ", "c", "a", "b", " ", "ab"});
  }
}

TEST_CASE("normalizers: NFC, NFKC, Lowercase, Strip, Replace with a regex — Digits pre-tokenizer") {
  V toks{"e", "\xc3\xa9", "f", "i", "\xc3\xa0", "b", " ", "x", "1", "2", "3", "123"};
  CHECK(pieces(make(tokenizer_json(bpe(toks), {{"type", "NFC"}})), "e\xcc\x81") == V{"\xc3\xa9"});
  CHECK(pieces(make(tokenizer_json(bpe(toks), {{"type", "NFKC"}})), "\xef\xac\x81") == V{"f", "i"});  // ﬁ
  CHECK(pieces(make(tokenizer_json(bpe(toks), {{"type", "Lowercase"}})),
               "\xc3\x80"
               "B") == V{"\xc3\xa0", "b"});
  const json strip = {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}};
  CHECK(pieces(make(tokenizer_json(bpe(toks), strip)), " \t x \xe3\x80\x80") == V{"x"});
  const json replace = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", " "}};
  CHECK(pieces(make(tokenizer_json(bpe(toks), replace)), "x   x") == V{"x", " ", "x"});
  json model = bpe(toks);
  model["ignore_merges"] = true;
  CHECK(pieces(make(tokenizer_json(model, nullptr, {{"type", "Digits"}, {"individual_digits", true}})), "x123") ==
        V{"x", "1", "2", "3"});
  CHECK(pieces(make(tokenizer_json(model, nullptr, {{"type", "Digits"}, {"individual_digits", false}})), "x123") ==
        V{"x", "123"});
}

TEST_CASE("post-processor templates: TemplateProcessing, RobertaProcessing, Sequence") {
  const json specials = {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
                         {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}};
  const json tp = {{"type", "TemplateProcessing"},
                   {"single",
                    {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                     {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                   {"special_tokens", specials}};
  const V toks{"<unk>", "<s>", "</s>", "a"};
  const auto tpl = make(tokenizer_json(bpe(toks), nullptr, nullptr, tp)).single_template();
  CHECK(tpl.prefix == std::vector<int>{1});
  CHECK(tpl.suffix == std::vector<int>{2});
  const json rob = {{"type", "RobertaProcessing"}, {"cls", {"<s>", 1}}, {"sep", {"</s>", 2}}};
  CHECK(make(tokenizer_json(bpe(toks), nullptr, nullptr, rob)).single_template().prefix == std::vector<int>{1});
  const json seq = {{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}}, tp}}};
  CHECK(make(tokenizer_json(bpe(toks), nullptr, nullptr, seq)).single_template().suffix == std::vector<int>{2});
  CHECK(make(tokenizer_json(bpe(toks), nullptr, nullptr, {{"type", "ByteLevel"}})).single_template().prefix.empty());
}

TEST_CASE("unsupported components and broken tokenizer.json: InputError naming the file and the component") {
  const V toks{"a", "b"};
  auto fails = [](const json& j, const std::string& what) {
    CHECK_THROWS_WITH_AS(make(j), doctest::Contains(what.c_str()), InputError);
    CHECK_THROWS_WITH_AS(make(j), doctest::Contains("test.json"), InputError);
  };
  json wp = bpe(toks);
  wp["type"] = "WordPiece";
  fails(tokenizer_json(wp), "model type 'WordPiece' is not supported");
  json uni = {{"type", "Unigram"}, {"vocab", json::array()}};
  fails(tokenizer_json(uni), "model type 'Unigram'");
  fails(tokenizer_json(bpe(toks), {{"type", "BertNormalizer"}}), "normalizer 'BertNormalizer' is not supported");
  fails(tokenizer_json(bpe(toks), {{"type", "Precompiled"}, {"precompiled_charsmap", "AA"}}),
        "normalizer 'Precompiled'");
  fails(tokenizer_json(bpe(toks), nullptr, {{"type", "Whitespace"}}), "pre_tokenizer 'Whitespace' is not supported");
  fails(tokenizer_json(bpe(toks), nullptr, nullptr, {{"type", "BertLike"}}), "post_processor 'BertLike'");
  fails(tokenizer_json(bpe(toks, {"a c"})), "merge 0 uses 'c', which is not in the vocabulary");
  fails(tokenizer_json(bpe(toks, {"a b"})), "makes 'ab', which is not in the vocabulary");
  fails(tokenizer_json(bpe(toks, {"a b c"})), "not two tokens separated by a space");
  json dropout = bpe(toks);
  dropout["dropout"] = 0.1;
  fails(tokenizer_json(dropout), "dropout");
  fails(tokenizer_json(bpe(toks), nullptr,
                       {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}}),
        "does not compile");
  CHECK_THROWS_WITH_AS(Tokenizer::from_json_text("{not json", "test.json"),
                       doctest::Contains("test.json: not valid JSON"), InputError);
  // Token ids (found by fuzzing): an added token's id outside [0, 2^31) was used as it came (a
  // negative one indexed before the id table, one past 2^31 wrapped around); an id far past the
  // tokens sized the dense id table by it (599999995: a 19 GB allocation).
  auto added = [](const json& id) { return json::array({{{"id", id}, {"content", "<x>"}, {"special", true}}}); };
  fails(tokenizer_json(bpe(toks), nullptr, nullptr, nullptr, added(-3)), "has id -3");
  fails(tokenizer_json(bpe(toks), nullptr, nullptr, nullptr, added(4294967301LL)), "has id 4294967301");
  fails(tokenizer_json(bpe(toks), nullptr, nullptr, nullptr, added(599999995)),
        "token id 599999995 is far past the 3 tokens it numbers");
  json far = bpe(toks);
  far["vocab"]["b"] = 2147483647;
  fails(tokenizer_json(far), "token id 2147483647 is far past the 2 tokens");
  fails(tokenizer_json(bpe(toks), nullptr, nullptr,
                       {{"type", "RobertaProcessing"}, {"cls", {"a", 4294967296LL}}, {"sep", {"b", 1}}}),
        "RobertaProcessing has token id 4294967296");
  // Gaps up to 2^20 are accepted: the id table then has that many empty entries.
  json gap = bpe(toks);
  gap["vocab"]["b"] = 1000000;
  const Tokenizer t = make(tokenizer_json(gap));
  CHECK(t.size() == 1000001);
  CHECK(t.id_to_token(1000000) == "b");
  CHECK(t.id_to_token(1) == "");
}

TEST_CASE("invalid UTF-8 is found at its first byte") {
  using models::invalid_utf8_offset;
  const auto npos = std::string_view::npos;
  CHECK(invalid_utf8_offset("plain ascii") == npos);
  CHECK(invalid_utf8_offset("h\xc3\xa9 \xf0\x9f\x98\x80 \xe4\xb8\x80") == npos);
  CHECK(invalid_utf8_offset("ab\xc0\x80") == 2);         // overlong NUL
  CHECK(invalid_utf8_offset("a\xed\xa0\x80") == 1);      // UTF-16 surrogate
  CHECK(invalid_utf8_offset("a\xf4\x90\x80\x80") == 1);  // above U+10FFFF
  CHECK(invalid_utf8_offset("abc\xe4\xb8") == 3);        // truncated
  CHECK(invalid_utf8_offset("\x80") == 0);               // lone continuation byte
  CHECK(invalid_utf8_offset("\xe0\x80\xaf") == 0);       // overlong 3-byte form
  CHECK(invalid_utf8_offset(std::string("a\0b", 3)) == npos);
}

TEST_CASE("a very long word is merged completely (no recursion, no cache limit)") {
  const Tokenizer t = make(tokenizer_json(bpe({"a", "aa", "aaaa"}, {"a a", "aa aa"})));
  const auto ids = t.encode(std::string(100001, 'a'));
  REQUIRE(ids.size() == 25001);  // 25000 × aaaa + a
  CHECK(t.id_to_token(ids.front()) == "aaaa");
  CHECK(t.id_to_token(ids.back()) == "a");
}

TEST_CASE("documents: <|doc|> lines separate, the line break before them belongs to them") {
  using W = std::vector<std::string_view>;
  CHECK(split_documents("one\ntext\n") == W{"one\ntext\n"});
  CHECK(split_documents("a\n<|doc|>\nb") == W{"a", "b"});
  CHECK(split_documents("a\n\n<|doc|>\nb\n") == W{"a\n", "b\n"});
  CHECK(split_documents("a\r\n<|doc|>\r\nb") == W{"a", "b"});
  CHECK(split_documents("<|doc|>\na\n<|doc|>\n<|doc|>\nb\n<|doc|>") == W{"a", "b"});  // empty ones dropped
  CHECK(split_documents("a\n<|doc|> \nb") == W{"a\n<|doc|> \nb"});                    // not alone on its line
  CHECK(split_documents("a\n <|doc|>\nb") == W{"a\n <|doc|>\nb"});
  CHECK(split_documents("x<|doc|>\ny") == W{"x<|doc|>\ny"});
  CHECK(split_documents(" \n<|doc|>\n\t") == W{" ", "\t"});  // whitespace-only documents are kept
  CHECK(split_documents("").empty());
  CHECK(split_documents("<|doc|>").empty());
}

TEST_CASE("BOS/EOS rules: tokenizer_config flags, post-processor template, EOS between documents") {
  TempDir dir("rules");
  const json specials = {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}};
  const json tp = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", specials}};
  const json tj = tokenizer_json(bpe({"<unk>", "<s>", "</s>", "a", "b"}), nullptr, nullptr, tp,
                                 json::array({added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")}));
  dir.write("tokenizer.json", tj.dump());
  const Tokenizer tok = load_checkpoint_tokenizer(dir.path);
  const std::vector<std::string_view> docs{"ab", "b", "a</s>"};

  // Template only, EOS unknown: BOS from the template, and no way to join documents.
  auto rules = special_token_rules(dir.path, tok);
  CHECK(rules.prefix == std::vector<int>{1});
  CHECK(rules.separator == -1);
  dir.write("text.txt", "ab\n<|doc|>\nb");
  CHECK_THROWS_WITH_AS(read_text_file(dir / "text.txt", dir.path, 0, {}), doctest::Contains("no EOS token"),
                       InputError);

  // EOS from generation_config.json (a list: the first id).
  dir.write("generation_config.json", R"({"eos_token_id": [2, 0]})");
  rules = special_token_rules(dir.path, tok);
  CHECK(rules.separator == 2);
  CHECK(encode_documents(tok, rules, docs) == std::vector<int>{1, 3, 4, 2, 1, 4, 2, 1, 3, 2});
  // An id past 2^31 is reported as written, not wrapped into the vocabulary (2^32 + 2 is not 2).
  dir.write("generation_config.json", R"({"eos_token_id": 4294967298})");
  CHECK_THROWS_WITH_AS(special_token_rules(dir.path, tok),
                       doctest::Contains("eos_token_id 4294967298 is outside the tokenizer's vocabulary"), InputError);
  dir.write("generation_config.json", R"({"eos_token_id": [2, 0]})");
  // tokenizer_config.json flags override the template; a document ending in EOS gets no second one.
  dir.write("tokenizer_config.json",
            R"({"add_bos_token": false, "add_eos_token": true, "eos_token": {"content": "</s>"}})");
  rules = special_token_rules(dir.path, tok);
  CHECK(rules.prefix.empty());
  CHECK(rules.suffix == std::vector<int>{2});
  CHECK(encode_documents(tok, rules, docs) == std::vector<int>{3, 4, 2, 4, 2, 3, 2, 2});
  CHECK(rules.description.find("tokenizer_config.json eos_token") != std::string::npos);
  dir.write("tokenizer_config.json", R"({"eos_token": "<nope>"})");
  CHECK_THROWS_WITH_AS(special_token_rules(dir.path, tok), doctest::Contains("'<nope>' is not a token"), InputError);
}

TEST_CASE("read_text_file: rows, --max-len, vocabulary and UTF-8 checks") {
  TempDir dir("text");
  dir.write("tokenizer.json", tokenizer_json(bpe({"<unk>", "</s>", "a", "b", " "})).dump());
  dir.write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  dir.write("t.txt", "ab ab\n<|doc|>\n  \n<|doc|>\nba");
  // ids: a b ␠ a b | </s> | ␠ ␠ | </s> | b a  → 11 tokens
  auto batch = read_text_file(dir / "t.txt", dir.path, 5, {});
  REQUIRE(batch.tokens.size() == 1);
  CHECK(batch.tokens[0] == std::vector<int>{2, 3, 4, 2, 3, 1, 4, 4, 1, 3, 2});
  CHECK(batch.target[0] == std::vector<int>(11, -1));
  CHECK(batch.description.find("3 document(s), 11 tokens") != std::string::npos);
  batch = read_text_file(dir / "t.txt", dir.path, 5, {4});
  CHECK(batch.tokens.size() == 2);
  CHECK(batch.tokens[1] == std::vector<int>{3, 1, 4, 4});
  CHECK(batch.description.find("last 3 token(s) dropped") != std::string::npos);
  CHECK_THROWS_WITH_AS(read_text_file(dir / "t.txt", dir.path, 5, {12}), doctest::Contains("fewer than --max-len"),
                       InputError);
  CHECK_THROWS_AS(read_text_file(dir / "t.txt", dir.path, 5, {1}), UsageError);
  CHECK_THROWS_WITH_AS(read_text_file(dir / "t.txt", dir.path, 4, {}),
                       doctest::Contains("outside the model's vocabulary"), InputError);
  dir.write("bad.txt", "ok\nline two \xff here");
  CHECK_THROWS_WITH_AS(read_text_file(dir / "bad.txt", dir.path, 5, {}),
                       doctest::Contains("not valid UTF-8: byte 12 (line 2, value 0xFF)"), InputError);
  dir.write("empty.txt", "");
  CHECK_THROWS_WITH_AS(read_text_file(dir / "empty.txt", dir.path, 5, {}), doctest::Contains("no text"), InputError);
  dir.write("one.txt", "a");
  CHECK_THROWS_WITH_AS(read_text_file(dir / "one.txt", dir.path, 5, {}), doctest::Contains("at least 2"), InputError);
  CHECK_THROWS_WITH_AS(read_text_file(dir / "t.txt", dir / "missing", 5, {}), doctest::Contains("no tokenizer.json"),
                       InputError);
}
