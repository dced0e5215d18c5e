"""Structured output for OpenLoRA's chat API: `response_format` (json_object, json_schema) and `tools` /
`tool_choice`, enforced by grammar-constrained decoding (xgrammar).

- bodies: the request fields in OpenAI's shapes;
- schema_check: which JSON schemas are accepted (only keywords the grammar enforces);
- grammars: compiling formats and tool sets for the engine's tokenizer;
- mask: the decode step's grammar stage (batch bitmask fill, one tensor op; matchers advanced after sampling);
- tool_format / tool_parser: the prompt format for tools, and reading calls back out of an answer (streamed too);
- chat: the glue the API calls.
"""
