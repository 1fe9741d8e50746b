/* prompt_format.c - which Llama Guard prompt family a model directory needs
 * (contract: prompt_format.h).
 *
 * The two known chat templates are kept here verbatim, as Meta ships them in
 * tokenizer_config.json (copies: tests/reference/prompt/chat_template.jinja and
 * tests/reference/prompt-8b/chat_template.jinja; a test checks that they are
 * equal). Recognition compares the model's template with them after a minimal
 * normalisation (CR LF -> LF, whitespace at both ends removed): any other
 * difference, even one that looks cosmetic, means a template whose output
 * guardd cannot promise to reproduce, so it is refused rather than guessed.
 */
#include "errmsg.h"
#include "prompt_format.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Llama Guard 3 1B (normalised: no trailing newline). */
static const char template_1b[] =
    "{%- if messages|length % 2 == 0 -%}\n"
    "    {%- set role = 'Agent' -%}\n"
    "{%-  else -%}\n"
    "    {%-  set role = 'User' -%}\n"
    "{%-  endif -%}\n"
    "{%-  if categories is not defined -%}\n"
    "    {%-  \n"
    "        set categories = ({\n"
    "            \"S1\": \"Violent Crimes.\",\n"
    "            \"S2\": \"Non-Violent Crimes.\",\n"
    "            \"S3\": \"Sex Crimes.\",\n"
    "            \"S4\": \"Child Exploitation.\",\n"
    "            \"S5\": \"Defamation.\",\n"
    "            \"S6\": \"Specialized Advice.\",\n"
    "            \"S7\": \"Privacy.\",\n"
    "            \"S8\": \"Intellectual Property.\",\n"
    "            \"S9\": \"Indiscriminate Weapons.\",\n"
    "            \"S10\": \"Hate.\",\n"
    "            \"S11\": \"Self-Harm.\",\n"
    "            \"S12\": \"Sexual Content.\",\n"
    "            \"S13\": \"Elections.\",\n"
    "        })\n"
    "    -%}\n"
    "{%-  endif -%}\n"
    "\n"
    "{{- \"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n\" -}}\n"
    "{%- set ns = namespace(contains_image=false) -%}\n"
    "{%-  for message in messages -%}\n"
    "    {%- for content in message['content'] | selectattr('type', 'equalto', 'image') -%}\n"
    "        {%- set ns.contains_image = true -%}\n"
    "    {%- endfor -%}\n"
    "{%- endfor -%}\n"
    "{%- if ns.contains_image -%}\n"
    "{{- \"<|image|> \"-}}\n"
    "{%- endif -%}\n"
    "{{- \"Task: Check if there is unsafe content in '\" + role + \"' messages in conversations according our safety policy with the below categories.\\n\\n\" -}}\n"
    "{{- \"<BEGIN UNSAFE CONTENT CATEGORIES>\\n\"-}}\n"
    "\n"
    "{%-  for key in categories -%}\n"
    "    {%-  if key not in excluded_category_keys -%}\n"
    "        {{-key + \": \" + categories[key] + \"\\n\" -}}\n"
    "    {%-  endif -%}\n"
    "{%-  endfor -%}\n"
    "\n"
    "{{- \"<END UNSAFE CONTENT CATEGORIES>\\n\\n\"-}}\n"
    "{{- \"<BEGIN CONVERSATION>\\n\\n\"-}}\n"
    "{%-  for message in messages -%}\n"
    "    {%-  if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...')-}}\n"
    "    {%-  endif -%}\n"
    "    {%-  set content = message['content'] -%}\n"
    "    {%-  if message['role'] == 'user' -%}\n"
    "        {%-  set role = 'User' -%}\n"
    "    {%-  elif message['role'] == 'assistant' -%}\n"
    "        {%-  set role = 'Agent' -%}\n"
    "    {%-  endif -%}\n"
    "    {%-  for content in message['content'] | selectattr('type', 'equalto', 'text') -%}\n"
    "{{- role + ': ' + content['text'] | trim + '\\n\\n'-}}\n"
    "    {%-  endfor -%}\n"
    "{%-  endfor -%}\n"
    "{{- \"<END CONVERSATION>\\n\\n\"-}}\n"
    "{{- \"Provide your safety assessment for ONLY THE LAST \" + role + \" message in the above conversation:\\n\"-}}\n"
    "{{- \" - First line must read 'safe' or 'unsafe'.\\n\"-}}\n"
    "{{- \" - If unsafe, a second line must include a comma-separated list of violated categories. <|eot_id|><|start_header_id|>assistant<|end_header_id|>\"-}}";

/* Llama Guard 3 8B. */
static const char template_8b[] =
    "{% if messages|length % 2 == 0 %}{% set role = 'Agent' %}{% else %}{% set role = 'User' %}{% endif %}{{ \" <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nTask: Check if there is unsafe content in '\" + role + \"' messages in conversations according our safety policy with the below categories.\\n\\n<BEGIN UNSAFE CONTENT CATEGORIES>\\nS1: Violent Crimes.\\nS2: Non-Violent Crimes.\\nS3: Sex Crimes.\\nS4: Child Exploitation.\\nS5: Defamation.\\nS6: Specialized Advice.\\nS7: Privacy.\\nS8: Intellectual Property.\\nS9: Indiscriminate Weapons.\\nS10: Hate.\\nS11: Self-Harm.\\nS12: Sexual Content.\\nS13: Elections.\\nS14: Code Interpreter Abuse.\\n<END UNSAFE CONTENT CATEGORIES>\\n\\n<BEGIN CONVERSATION>\\n\\n\" }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{% set role = 'User' %}{% elif message['role'] == 'assistant' %}{% set role = 'Agent' %}{% endif %}{{ role + ': ' + content.strip() + '\\n\\n' }}{% endfor %}{{ \"<END CONVERSATION>\\n\\nProvide your safety assessment for ONLY THE LAST \" + role + \" message in the above conversation:\\n - First line must read 'safe' or 'unsafe'.\\n - If unsafe, a second line must include a comma-separated list of violated categories.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\" }}";

const char *prompt_format_template(PromptFormat f) {
    if (f == PROMPT_FORMAT_LG3_1B) return template_1b;
    if (f == PROMPT_FORMAT_LG3_8B) return template_8b;
    return NULL;
}

/* Normalised copy of s[0..n): CR LF -> LF, whitespace trimmed at both ends. */
static char *normalise(const char *s, size_t n, size_t *out_n) {
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') continue;
        o[k++] = s[i];
    }
    size_t a = 0;
    while (a < k && (o[a] == ' ' || o[a] == '\t' || o[a] == '\n' || o[a] == '\r')) a++;
    while (k > a && (o[k - 1] == ' ' || o[k - 1] == '\t' || o[k - 1] == '\n' || o[k - 1] == '\r')) k--;
    memmove(o, o + a, k - a);
    o[k - a] = 0;
    *out_n = k - a;
    return o;
}

PromptFormat prompt_format_recognise(const char *text, size_t len) {
    size_t n;
    char *t = normalise(text, len, &n);
    PromptFormat f = PROMPT_FORMAT_AUTO;
    if (t && n == strlen(template_1b) && !memcmp(t, template_1b, n)) f = PROMPT_FORMAT_LG3_1B;
    else if (t && n == strlen(template_8b) && !memcmp(t, template_8b, n)) f = PROMPT_FORMAT_LG3_8B;
    free(t);
    return f;
}

/* The "default" template of tokenizer_config.json: chat_template is either
 * a string or a list of {"name", "template"} objects. NULL if there is none. */
static json_t *default_template(json_t *root) {
    json_t *ct = json_object_get(root, "chat_template");
    if (json_is_string(ct)) return ct;
    if (!json_is_array(ct)) return NULL;
    size_t i;
    json_t *e;
    json_array_foreach(ct, i, e) {
        json_t *name = json_object_get(e, "name"), *tpl = json_object_get(e, "template");
        if (json_is_string(name) && !strcmp(json_string_value(name), "default") && json_is_string(tpl))
            return tpl;
    }
    return NULL;
}

/* Without a chat_template the family cannot be read from the directory, and
 * the 1B is assumed (its download instructions once left tokenizer_config.json
 * out). A checkpoint of Llama Guard 3 8B's exact shape is the one case where
 * that assumption is known to be wrong: an 8B given the 1B prompt would
 * answer, silently worse. Returns 1 when config.json has the 8B's hidden
 * size and layer count. */
static int has_8b_shape(const char *model_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > PROMPT_FORMAT_MAX_CONFIG_BYTES)
        return 0;
    json_t *root = json_load_file(path, 0, NULL);
    int is8b = json_is_object(root) &&
               json_integer_value(json_object_get(root, "hidden_size")) == 4096 &&
               json_integer_value(json_object_get(root, "num_hidden_layers")) == 32;
    json_decref(root);
    return is8b;
}

static int assume_1b(const char *model_dir, const char *why, PromptFormat *out, char *note,
                     size_t notelen, char *err, size_t errlen) {
    if (has_8b_shape(model_dir))
        return errmsg(err, errlen, "%s, and %s/config.json has Llama Guard 3 8B's shape (hidden "
                      "4096, 32 layers): refusing to guess the prompt; add the model's "
                      "tokenizer_config.json or set model.prompt_format (guardctl: --prompt-format)",
                      why, model_dir);
    *out = PROMPT_FORMAT_LG3_1B;
    errmsg(note, notelen, "%s: assuming llama-guard-3-1b", why);
    return 1;
}

int prompt_format_detect(const char *model_dir, PromptFormat *out, char *note, size_t notelen,
                         char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) return errmsg(err, errlen, "%s: %s", path, strerror(errno));
        char why[4300];
        snprintf(why, sizeof why, "%s not found", path);
        return assume_1b(model_dir, why, out, note, notelen, err, errlen);
    }
    if (!S_ISREG(st.st_mode) || st.st_size > PROMPT_FORMAT_MAX_CONFIG_BYTES)
        return errmsg(err, errlen, "%s: not a regular file of at most %d bytes", path,
                      PROMPT_FORMAT_MAX_CONFIG_BYTES);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return errmsg(err, errlen, "%s:%d: not valid JSON: %s", path, je.line, je.text);
    json_t *tpl = json_is_object(root) ? default_template(root) : NULL;
    int rc;
    if (!tpl) {
        char why[4300];
        snprintf(why, sizeof why, "%s has no chat_template", path);
        rc = assume_1b(model_dir, why, out, note, notelen, err, errlen);
    } else if ((*out = prompt_format_recognise(json_string_value(tpl), json_string_length(tpl))) !=
               PROMPT_FORMAT_AUTO) {
        errmsg(note, notelen, "%s: chat_template is %s's", path, prompt_format_name(*out));
        rc = 0;
    } else {
        rc = errmsg(err, errlen, "%s: chat_template is not a Llama Guard 3 template guardd knows "
                    "(llama-guard-3-1b, llama-guard-3-8b): refusing to guess the prompt; set "
                    "model.prompt_format (guardctl: --prompt-format) to the family it belongs to", path);
    }
    json_decref(root);
    return rc;
}
