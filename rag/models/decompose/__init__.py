"""Query decomposers: rules, a learned question-type classifier, a prompted LLM."""
