"""Pure text helpers every layer may use: sentences, terms, the BM25 tokenizer, injection detection."""
