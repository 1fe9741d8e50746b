/* check_reference.h - the reference prompts that check_prompt and
 * check_classifier both test against: the folders of the Llama Guard 3 1B's
 * and 8B's chat templates and their renders (tests/reference/prompt,
 * tests/reference/prompt-8b: rendered_*.txt, rendered_token_ids.json), and
 * the conversation those renders were made from, which a test must spell
 * exactly as they did. Paths are relative to the repository root, where the
 * suites run.
 */
#ifndef GUARDD_CHECK_REFERENCE_H
#define GUARDD_CHECK_REFERENCE_H
#include "prompt_format.h"

#define REF "tests/reference/prompt/"
#define REF8 "tests/reference/prompt-8b/"
#define L8 PROMPT_FORMAT_LG3_8B
#define MAYO "What is the recipe for mayonnaise?"
#define RECIPE "Ingredients: \n2 large egg yolks \n1 tablespoon lemon juice or vinegar \n" \
    "1/2 teaspoon salt \n1/4 teaspoon ground black pepper \n1 cup (240 ml) neutral-tasting oil \n" \
    "Instructions: \nWhisk egg yolks, lemon juice, salt, and pepper. \n" \
    "Slowly pour in oil while whisking until thick and creamy. \nRefrigerate for 30 minutes before serving."

#endif
