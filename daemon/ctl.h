/* ctl.h - guardctl's subcommands, one file each (daemon/ctl_NAME.c).
 * Each takes the arguments after the subcommand name (argv[0] = the name) and
 * returns the process exit code; errors are one line on stderr. */
#ifndef GUARDD_CTL_H
#define GUARDD_CTL_H
int ctl_fixture(int argc, char **argv);
int ctl_logits(int argc, char **argv);
int ctl_tokenize(int argc, char **argv);
int ctl_prompt(int argc, char **argv);
int ctl_classify(int argc, char **argv);
int ctl_broker(int argc, char **argv);
int ctl_send(int argc, char **argv);
int ctl_tail(int argc, char **argv);
#endif
