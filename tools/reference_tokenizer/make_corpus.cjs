#!/usr/bin/env node
// Writes corpus.json: the strings the tokenizer conformance test encodes with both moetrace and the
// reference. Deterministic; rerun after editing: node make_corpus.cjs > corpus.json
// Deliberately absent: U+FEFF and U+0085, which JavaScript's \s and PCRE2/Oniguruma's \s treat
// differently (see docs/tokenizer.md), and characters newer than Unicode 14 (PCRE2 10.42's tables).
"use strict";

// At least one sentence per script; several scripts have more.
const sentences = [
  // Latin
  "The Eiffel Tower is located in the city of", "Paris", " Paris", "Danielle Darrieux's mother tongue is",
  "Toko Yasuda plays the", "Autonomous University of Madrid, which is located in",
  "L'été dernier, nous sommes allés à Montréal.", "Größenwahn und Straße: Ärger über Öl.",
  "¿Dónde está la biblioteca? ¡Allí!", "Tiếng Việt có nhiều dấu thanh: ả, ẫ, ợ.",
  "Zażółć gęślą jaźń.", "İstanbul'da ılık bir gün; ŞİŞLİ.", "Ångström, fjörd, smørrebrød.",
  "Ça coûte 12,50 € — pas cher !", "Čeština: příliš žluťoučký kůň úpěl ďábelské ódy.",
  // Cyrillic
  "Москва — столица России.", "Київ є столицею України.", "Съешь же ещё этих мягких французских булок.",
  // Greek
  "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
  // Arabic
  "القاهرة هي عاصمة مصر.", "مرحبا بالعالم! ١٢٣٤٥",
  // Hebrew
  "ירושלים היא עיר עתיקה.", "שָׁלוֹם עֲלֵיכֶם",
  // Devanagari
  "नई दिल्ली भारत की राजधानी है।", "संस्कृतम् भाषा",
  // Bengali
  "ঢাকা বাংলাদেশের রাজধানী।",
  // Tamil
  "சென்னை தமிழ்நாட்டின் தலைநகரம்.",
  // Telugu
  "హైదరాబాద్ తెలంగాణ రాజధాని.",
  // Gujarati
  "ગાંધીનગર ગુજરાતની રાજધાની છે.",
  // Thai
  "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
  // Han (Chinese)
  "北京是中华人民共和国的首都。", "繁體中文與简体中文", "我爱自然语言处理！",
  // Japanese
  "東京は日本の首都です。", "ひらがなとカタカナ、カタカナ語。", "ｶﾀｶﾅ半角",
  // Hangul
  "서울은 대한민국의 수도입니다.", "한국어 형태소 분석",
  // Georgian
  "თბილისი საქართველოს დედაქალაქია.",
  // Armenian
  "Երևանը Հայաստանի մայրաքաղաքն է։",
  // Ethiopic
  "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።",
  // Khmer
  "ភ្នំពេញជារាជធានីនៃប្រទេសកម្ពុជា។",
  // Tibetan
  "ལྷ་ས་ནི་བོད་ཀྱི་རྒྱལ་ས་ཡིན།",
  // Sinhala
  "කොළඹ ශ්‍රී ලංකාවේ නගරයකි.",
  // Myanmar
  "နေပြည်တော်သည် မြန်မာနိုင်ငံ၏ မြို့တော်ဖြစ်သည်။",
  // Mongolian (Cyrillic) and Mongolian script
  "Улаанбаатар бол Монгол улсын нийслэл.", "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ",
  // Cherokee, Syriac, Lao
  "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ܫܠܡܐ ܥܠܡܐ", "ວຽງຈັນແມ່ນນະຄອນຫຼວງ",
];

const hard = [
  // empty and one-character strings
  "", " ", "  ", "a", "Z", "0", "9", ".", "'", "\n", "\t", "\r", "é", "中", "😀", "ß", "\u00a0",
  // digits
  "1234567890", "3.14159265358979", "1,000,000", "2024-01-01T12:34:56Z", "0x1F4A9", "12 345 678",
  "In 1969, 600 million people watched.", "٣٫١٤", "१२३४५", "①②③", "Ⅻ", "½ + ¼ = ¾",
  // contractions (the Qwen3 regex treats them case-insensitively)
  "I'm", "don't", "WE'LL", "she'D", "they've", "You'RE", "it's", "IT'S", "o'clock", "rock 'n' roll",
  "It’s curly", "'s", "'S'T'RE", "can't won't shouldn't've",
  // runs of whitespace and newlines
  "a  b", "a   b    c", "   leading", "trailing   ", "\t\ttabs\t", "\n\n\n", "a\r\nb\r\n", " \n \n ",
  "line one\nline two\n\nline four", "x \n y", "  \n\n  ", "word\u3000ideographic space", "a\u2003b",
  "tab\there", "end with newline\n", "\n start with newline", "    four spaces of indent",
  "def f(x):\n    return x * 2\n", "a \t b",
  // emoji, ZWJ sequences, flags, modifiers
  "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇩🇪🇯🇵", "👍🏽 thumbs", "1️⃣ keycap", "❤️", "🧑🏿‍💻 coder", "😀😃😄😁",
  "emoji at end 🎉", "🙂 emoji at start",
  // combining marks (decomposed forms; NFC composes them for Qwen3)
  "e\u0301", "Cafe\u0301", "n\u0303o", "a\u0308\u0301", "Z\u0351\u0360\u0337a\u0322l\u0336g\u0334o", "\u0301",
  "\u1100\u1161\u11a8", "Å vs A\u030a vs \u212b",
  // full-width and compatibility forms
  "ＡＢＣ１２３", "！？（）", "ｈｅｌｌｏ　ｗｏｒｌｄ", "ﬁ ligature", "㎞ ㍻",
  // long words and long strings
  "Pneumonoultramicroscopicsilicovolcanoconiosis", "Donaudampfschiffahrtsgesellschaftskapitän",
  "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch", "a".repeat(300), "ab".repeat(200),
  "9".repeat(120), "的".repeat(100), " ".repeat(64), "\n".repeat(40), "🙂".repeat(30),
  // special tokens written in text
  "<s>", "</s>", "<unk>", "<s>hello</s>", "<|im_start|>user\nhi<|im_end|>", "<|endoftext|>",
  "text<|endoftext|>more", "<think>\n\n</think>", "<|im_start|><|im_end|>", "< s >", "<0x41>",
  // punctuation, code, URLs, markup
  "Hello, world!", "!!!???...", "--- *** ___", "https://example.com/path?q=1&r=2#frag",
  "user@example.org", "{\"key\": [1, 2, 3]}", "<div class=\"x\">text</div>", "x += 1; // comment",
  "C++ and C# and F#", "$100.00 + €50 - ¥3000", "#hashtag @mention", "snake_case and camelCase",
  "E = mc²", "∀x ∈ ℝ: x² ≥ 0", "→ ← ↑ ↓", "«quotes» „Anführung“ “curly”", "…", "§1.2 ¶3",
  // mixed scripts
  "English 中文 русский العربية हिन्दी 日本語 한국어", "Tokyo (東京) is Japan's capital.",
  "Die Hauptstadt von 日本 ist Tokyo.", "ASCII then ελληνικά then עברית",
];

const corpus = [];
const seen = new Set();
const add = (s) => {
  if (!seen.has(s)) {
    seen.add(s);
    corpus.push(s);
  }
};
for (const s of hard) add(s);
for (const s of sentences) {
  add(s);
  add(" " + s);
  add(s + "\n");
  add(s.toUpperCase());
  add("  " + s + "  ");
}
// CounterFact-style prompt + object pairs.
const prompts = [
  ["The mother tongue of {} is", "Danielle Darrieux", "French"],
  ["{} is a product of", "iPhone 5", "Apple"],
  ["{}, which is located in", "Autonomous University of Madrid", "Spain"],
  ["{} plays the", "Toko Yasuda", "guitar"],
  ["The capital of {} is", "Deutschland", "Berlin"],
  ["{} は", "東京タワー", "日本"],
  ["{} находится в", "Эрмитаж", "Санкт-Петербурге"],
];
for (const [p, s, o] of prompts) {
  add(p.replace("{}", s));
  add(o);
  add(" " + o);
}
process.stdout.write(JSON.stringify(corpus, null, 1) + "\n");
