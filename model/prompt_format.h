/* prompt_format.h - which Llama Guard prompt family (prompt.h) a model
 * directory needs, read from its tokenizer_config.json, the way Hugging Face
 * tools pick the prompt: the "chat_template" there is compared with the
 * templates guardd renders exactly (Llama Guard 3 1B and 8B).
 */
#ifndef GUARDD_PROMPT_FORMAT_H
#define GUARDD_PROMPT_FORMAT_H
#include <stddef.h>
#include "prompt.h"

#define PROMPT_FORMAT_MAX_CONFIG_BYTES (16 << 20) /* tokenizer_config.json */

/* The family whose chat template text[0..len) is, ignoring CR LF vs LF and
 * whitespace at both ends; PROMPT_FORMAT_AUTO if it is neither. */
PromptFormat prompt_format_recognise(const char *text, size_t len);

/* The family's chat template as Meta ships it (without a final newline), to
 * write into test fixtures; NULL for AUTO. */
const char *prompt_format_template(PromptFormat f);

/* Reads model_dir/tokenizer_config.json. Returns
 *   0  its chat_template (a string, or the entry named "default" of a list)
 *      is a known one: *out is its family;
 *   1  there is no such file, or no chat_template in it: *out is
 *      llama-guard-3-1b, the format of every guardd model before the 8B
 *      (callers should log note);
 *  -1  the template is not one guardd knows, or the file cannot be read or
 *      parsed: err names the file (a format must then be configured).
 * note (may be NULL) says what was found, for the log. */
int prompt_format_detect(const char *model_dir, PromptFormat *out, char *note, size_t notelen,
                         char *err, size_t errlen);

#endif
