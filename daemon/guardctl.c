/* guardctl - guardd's command-line companion: model fixtures and logits,
 * tokenizer and prompt inspection, one-shot classification, and a small Kafka
 * toolbox (a mock broker, sending events, tailing verdicts). Dispatches to
 * one function per subcommand (ctl.h). */
#include <stdio.h>
#include <string.h>
#include "ctl.h"

static const struct { const char *name; int (*fn)(int, char **); const char *help; } cmds[] = {
    {"fixture",  ctl_fixture,  "write a random-weight checkpoint (tiny | llama-guard-3-1b shape)"},
    {"logits",   ctl_logits,   "run token sequences as one batch, write last-position logits"},
    {"tokenize", ctl_tokenize, "text on stdin -> token ids"},
    {"prompt",   ctl_prompt,   "conversation JSON on stdin -> exact Llama Guard prompt"},
    {"classify", ctl_classify, "classify a text or conversations (JSON lines on stdin)"},
    {"broker",   ctl_broker,   "run a standalone mock Kafka cluster, print its bootstrap list"},
    {"send",     ctl_send,     "produce a conversation event (msgpack) to a topic"},
    {"tail",     ctl_tail,     "print guardd records from a topic as JSON lines"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: guardctl COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "guardctl: unknown command '%s' (see guardctl --help)\n", argv[1]);
    return 2;
}
