/* Experiment configs: a table of bad configs (each error names file, line,
 * key and what was expected), the examples (quickstart.ini == built-in
 * default; the anchor builds), INI round trip, driver errors mapped back to
 * the config line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/model.h"
#include "controller/rng.h"

/* A good config; bad ones below are edits of it.  Line numbers matter. */
static const char *good =
    "[data]\n"                       /* 1 */
    "set = synthetic\n"              /* 2 */
    "train_limit = 64\n"             /* 3 */
    "\n"                             /* 4 */
    "[device a]\n"                   /* 5 */
    "driver = oscillators\n"         /* 6 */
    "n = 16\n"                       /* 7 */
    "\n"                             /* 8 */
    "[model]\n"                      /* 9 */
    "layer = pad 200\n"              /* 10 */
    "layer = linear 16\n"            /* 11 */
    "layer = physical a\n"           /* 12 */
    "layer = readout 10\n"           /* 13 */
    "\n"                             /* 14 */
    "[train]\n"                      /* 15 */
    "epochs = 1\n";                  /* 16 */

typedef struct bad_case {
    const char *text;
    const char *expect[3];  /* substrings of the message */
} bad_case;

#define HEAD "[data]\nset = synthetic\n"                       /* lines 1-2 */
#define DEV "[device a]\ndriver = oscillators\nn = 16\n"       /* +3 lines */
#define MODEL "[model]\nlayer = physical a\nlayer = readout 10\n" /* +3 lines */

static const bad_case bad[] = {
    {HEAD "[dataa]\n", {"bad.ini:3:", "unknown section [dataa]", "expected [data]"}},
    {HEAD "colour = red\n", {"bad.ini:3:", "[data]: unknown key 'colour'", "known: set, path"}},
    {HEAD "[train]\nlr = abc\n", {"bad.ini:4:", "[train] lr: expected a number > 0", "got 'abc'"}},
    {HEAD "[train]\nlr = -1\n", {"bad.ini:4:", "[train] lr", "> 0"}},
    {HEAD "[train]\nlr = nan\n", {"bad.ini:4:", "[train] lr", "'nan'"}},
    {HEAD "[train]\nepochs = 2.5\n", {"bad.ini:4:", "[train] epochs: expected an integer in 0..1000", "'2.5'"}},
    {HEAD "[train]\nbatch = 0\n", {"bad.ini:4:", "[train] batch: expected an integer in 1..65536", NULL}},
    {HEAD "[train]\nmode = fast\n", {"bad.ini:4:", "[train] mode: expected pat, insilico, ideal, spsa, pc, dfa, adfa or bpstdp", "'fast'"}},
    {HEAD "[train]\nmode = pc\npc_variant = loose\n", {"bad.ini:5:", "[train] pc_variant: expected strict, fixedpred or exact", "'loose'"}},
    {HEAD "[train]\nmode = pc\npc_eta = 2\n", {"bad.ini:5:", "[train] pc_eta: expected a number in (0, 2)", NULL}},
    {HEAD "[train]\nmode = pc\npc_iters = 0\n", {"bad.ini:5:", "[train] pc_iters: expected an integer in 1..", NULL}},
    {HEAD "[train]\nmode = pat\npc_iters = 5\n", {"bad.ini:5:", "pc_iters: only used with mode = pc", "mode is pat"}},
    {HEAD "[train]\npc_eta = 0.5\nmode = dfa\n", {"bad.ini:4:", "only used with mode = pc", "mode is dfa"}},
    {HEAD "[train]\nmode = dfa\ndfa_g = cos\n", {"bad.ini:5:", "dfa_g: only used with mode = adfa", "dfa uses g = 1"}},
    {HEAD "[train]\nmode = adfa\ndfa_g = relu\n", {"bad.ini:5:", "[train] dfa_g: expected one, cos, sin, tanh or sech2", NULL}},
    {HEAD "[train]\nbean = -1\n", {"bad.ini:4:", "[train] bean: expected a number >= 0", NULL}},
    {HEAD "[train]\nbean_physical = 2\n", {"bad.ini:4:", "[train] bean_physical: expected an integer in 0..1", NULL}},
    {HEAD "[train]\nprune = 1\n", {"bad.ini:4:", "[train] prune: expected a fraction in [0, 1)", NULL}},
    {HEAD "[train]\nepochs = 3\nprune_after = -1\n", {"bad.ini:5:", "[train] prune_after: expected an integer in 0..1000", NULL}},
    {HEAD "[train]\nprune_ramp = 1.5\n", {"bad.ini:4:", "[train] prune_ramp: expected an integer in 0..1000", NULL}},
    {HEAD "[train]\nprune_physical = x\n", {"bad.ini:4:", "[train] prune_physical: expected an integer in 0..1", NULL}},
    {HEAD DEV "dfa_roles = C:weight\n[train]\nmode = pat\n", {"bad.ini:6:", "[device a] dfa_roles: only used with mode = dfa, adfa or bpstdp", NULL}},
    {HEAD "[train]\nepochs = 1\nbatch = 8\nepochs = 2\n", {"bad.ini:6:", "[train] epochs: given twice", "line 4"}},
    {HEAD "[train]\n[data]\n", {"bad.ini:4:", "section [data] appears twice", "line 1"}},
    {HEAD "[device]\ndriver = oscillators\n", {"bad.ini:3:", "expected [device NAME]", NULL}},
    {HEAD "[device a b]\n", {"bad.ini:3:", "expected [device NAME]", NULL}},
    {HEAD "[device a]\nn = 16\n" MODEL, {"bad.ini:3:", "[device a]: no driver", NULL}},
    {HEAD "[device a]\ndriver = oscillators\nn = 6 4\n", {"bad.ini:5:", "[device a] n: expected a value without blanks", NULL}},
    {HEAD "[device a]\ndriver = oscillators\nlimits = maybe\n", {"bad.ini:5:", "[device a] limits: expected clamp or reject", "'maybe'"}},
    {HEAD "[device a]\ndriver = oscillators\nsteps = jump\n", {"bad.ini:5:", "[device a] steps: expected ramp or refuse", NULL}},
    {HEAD "[device a]\ndriver = oscillators\nn = 16\nn = 17\n", {"bad.ini:6:", "[device a] n: given twice", "line 5"}},
    {HEAD DEV "[device a]\ndriver = oscillators\n", {"bad.ini:6:", "section [device a] appears twice", "line 3"}},
    {HEAD "[model]\nlayer = conv 3\n", {"bad.ini:4:", "[model] layer: expected KIND [ARG]", "'conv 3'"}},
    {HEAD "[model]\nlayer = pad\n", {"bad.ini:4:", "expected 'pad N' with a positive integer N", NULL}},
    {HEAD "[model]\nlayer = pad -3\n", {"bad.ini:4:", "expected 'pad N'", "'pad -3'"}},
    {HEAD "[model]\nlayer = tanh 3\n", {"bad.ini:4:", "'tanh' takes no argument", NULL}},
    {HEAD "[model]\nlayer = physical\n", {"bad.ini:4:", "expected 'physical DEVICE'", NULL}},
    {HEAD "[model]\nlayer = physical nosuch\n", {"bad.ini:4:", "no [device nosuch] section", NULL}},
    {HEAD DEV "[model]\nlayer = physical a\nlayer = physical a\n", {"bad.ini:8:", "device a is already used on line 7", NULL}},
    {HEAD "[model]\nlayers = pad 3\n", {"bad.ini:4:", "[model]: unknown key 'layers'", "known: layer"}},
    {HEAD "[model]\n", {"bad.ini:", "[model]: no layers", NULL}},
    {"epochs = 3\n[data]\n", {"bad.ini:1:", "'epochs' before any section", NULL}},
    {HEAD "just some words\n", {"bad.ini:3:", "expected 'key = value'", NULL}},
    {HEAD "[train\n", {"bad.ini:3:", "section header", NULL}},
    {HEAD "[logging]\njournal = sometimes\n", {"bad.ini:4:", "[logging] journal: expected all, off or every N", "'sometimes'"}},
    {HEAD "[logging]\njournal = every 0\n", {"bad.ini:4:", "expected 'every N' with N >= 1", NULL}},
    {HEAD "[logging]\nprogress = loud\n", {"bad.ini:4:", "[logging] progress: expected auto, bar, lines or off", NULL}},
    {HEAD "[train]\nmax_failed_steps = -1\n", {"bad.ini:4:", "[train] max_failed_steps: expected an integer", NULL}},
    {HEAD "[train]\nmax_failed_steps = few\n", {"bad.ini:4:", "[train] max_failed_steps: expected an integer", "'few'"}},
    {HEAD "[train]\nmax_failed_steps = 2000000\n", {"bad.ini:4:", "[train] max_failed_steps", NULL}},
    {HEAD "[train]\nmicrobatches = 0\n", {"bad.ini:4:", "[train] microbatches: expected an integer", NULL}},
    {HEAD "[train]\nmicrobatches = 65\n", {"bad.ini:4:", "[train] microbatches", NULL}},
    {HEAD "[logging]\ncheckpoint_every = -5\n", {"bad.ini:4:", "[logging] checkpoint_every: expected an integer", NULL}},
    {HEAD "[logging]\nverbose = 1\n", {"bad.ini:4:", "[logging]: unknown key 'verbose'", NULL}},
    {"[data]\nset = mnist\n", {"bad.ini:2:", "[data] set: expected fashion-mnist, synthetic, narma10 or mackey-glass", "'mnist'"}},
    {"[data]\npool = 0\n", {"bad.ini:2:", "[data] pool: expected an integer in 1..14", NULL}},
    {HEAD "[train]\nmomentum = 1\n", {"bad.ini:4:", "[train] momentum: expected a number in [0, 1)", NULL}},
    {HEAD "[train]\nseed = -1\n", {"bad.ini:4:", "[train] seed: expected an integer", NULL}},
    {HEAD "[train]\nlr =\n", {"bad.ini:4:", "[train] lr: no value", NULL}},
    {HEAD "[device a]\ndriver = oscillators\nbad key! = 3\n", {"bad.ini:5:", "not a valid option name", NULL}},
};

static void test_bad_configs(void **state)
{
    (void)state;
    size_t n = sizeof(bad) / sizeof(bad[0]);
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        run_config c;
        char err[512] = "";
        int rc = config_parse_text(&c, bad[i].text, "bad.ini", err, sizeof(err));
        if (rc == 0) /* the rules' keys are checked once the mode is final */
            rc = config_check_rules(&c, err, sizeof(err));
        printf("  bad config %2zu: %s\n", i + 1, err);
        assert_int_equal(rc, PATCTL_ERR_CONFIG);
        for (int k = 0; k < 3 && bad[i].expect[k]; k++) {
            if (!strstr(err, bad[i].expect[k]))
                fail_msg("case %zu: message '%s' lacks '%s'", i + 1, err, bad[i].expect[k]);
        }
    }
}

static void test_long_line(void **state)
{
    (void)state;
    char text[2048];
    char path[900];
    memset(path, 'x', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    snprintf(text, sizeof(text), "[data]\n# a comment that is very long is fine: %s\npath = /%s\n", path, path);
    run_config c;
    char err[512];
    assert_int_equal(config_parse_text(&c, text, "long.ini", err, sizeof(err)), PATCTL_ERR_CONFIG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "long.ini:3: line too long"));
}

static void test_good_config(void **state)
{
    (void)state;
    run_config c;
    char err[512] = "";
    assert_int_equal(config_parse_text(&c, good, "good.ini", err, sizeof(err)), 0);
    assert_string_equal(c.data_set, "synthetic");
    assert_int_equal(c.train_limit, 64);
    assert_int_equal(c.n_devices, 1);
    assert_string_equal(c.devices[0].options, "n=16");
    assert_int_equal(c.devices[0].line, 5);
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.layers[2].kind, LAYER_PHYSICAL);
    assert_int_equal(c.layer_lines[2], 12);
    assert_int_equal(c.epochs, 1);
    /* comments, blanks, indentation, inline comments, journal every N */
    const char *t =
        "; header comment\n"
        "  [data]   ; inline\n"
        "\tset = synthetic   # inline too\n"
        "[device   a]\n"
        "   driver = oscillators\n"
        "   surrogate = fitted-osc16\n"
        "   n = 16\n"
        "[model]\n"
        "layer = physical a\n"
        "layer = readout 10\n"
        "[logging]\n"
        "journal = every 7\n";
    assert_int_equal(config_parse_text(&c, t, "t.ini", err, sizeof(err)), 0);
    assert_string_equal(c.devices[0].name, "a");
    assert_string_equal(c.devices[0].surrogate, "fitted-osc16");
    assert_string_equal(c.devices[0].options, "n=16"); /* surrogate is not a driver option */
    assert_int_equal(c.journal, JOURNAL_EVERY);
    assert_int_equal(c.journal_every, 7);
}

static void read_example(run_config *c, const char *name)
{
    char path[1024], err[512] = "";
    snprintf(path, sizeof(path), "%s/examples/%s", PATCTL_SOURCE_DIR, name);
    int rc = config_load(c, path, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
}

static void test_quickstart_ini_is_builtin(void **state)
{
    (void)state;
    run_config a, b;
    read_example(&a, "quickstart.ini");
    config_quickstart(&b);
    char diff[256];
    int eq = config_equal(&a, &b, diff, sizeof(diff));
    if (!eq)
        fail_msg("examples/quickstart.ini differs from the built-in default: %s", diff);
    /* and config_equal can fail */
    b.devices[1].options[3] = '7';
    assert_false(config_equal(&a, &b, diff, sizeof(diff)));
    printf("  (a changed option is seen: %s)\n", diff);
    config_quickstart(&b);
    b.lr = 2e-3;
    assert_false(config_equal(&a, &b, NULL, 0));
}

static void roundtrip(const run_config *c)
{
    char *text = config_format(c);
    assert_non_null(text);
    run_config d;
    char err[512], diff[256];
    int rc = config_parse_text(&d, text, "formatted", err, sizeof(err));
    if (rc)
        fail_msg("formatted config does not parse: %s\n%s", err, text);
    if (!config_equal(c, &d, diff, sizeof(diff)))
        fail_msg("round trip differs: %s\n%s", diff, text);
    free(text);
}

static void test_roundtrip(void **state)
{
    (void)state;
    run_config c;
    config_quickstart(&c);
    roundtrip(&c);
    c.mode = MODE_SPSA, c.lr = 0.1 / 3, c.schedule = SCHED_COSINE, c.warmup = 17, c.spsa_c = 1e-3 / 7;
    c.journal = JOURNAL_EVERY, c.journal_every = 9, c.progress = PROGRESS_LINES, c.optimizer = OPT_SGD;
    c.momentum = 0.9, c.seed = 123456, c.microbatches = 3;
    snprintf(c.devices[0].surrogate, sizeof(c.devices[0].surrogate), "mlp-1");
    roundtrip(&c);
    read_example(&c, "fmnist-oscillators.ini");
    roundtrip(&c);
    /* the learning rules' own keys */
    config_quickstart(&c);
    c.mode = MODE_PC, c.pc_variant = PC_STRICT, c.pc_eta = 0.3 / 7, c.pc_iters = 13, c.bean = 1e-3 / 3;
    c.bean_physical = 0;
    c.prune = 0.75, c.prune_after = 3, c.prune_ramp = 1, c.prune_physical = 0, c.epochs = 5;
    roundtrip(&c);
    config_quickstart(&c);
    c.mode = MODE_ADFA, c.dfa_g = DFA_G_SECH2;
    snprintf(c.devices[1].dfa_roles, sizeof(c.devices[1].dfa_roles), "C:fixed,e:bias_out");
    roundtrip(&c);
    /* normalising drops another rule's settings (so --mode pat on a pc file round-trips) */
    c.mode = MODE_PAT, c.pc_iters = 3;
    config_normalize(&c);
    assert_int_equal(c.pc_iters, 20);
    assert_string_equal(c.devices[1].dfa_roles, "");
    roundtrip(&c);
}

/* The anchor: 16 patches of 7x7 padded to 100 through one shared
 * 100-oscillator layer, 1600 + 10 through a 1610-oscillator layer. */
static void test_anchor_builds(void **state)
{
    (void)state;
    run_config c;
    read_example(&c, "fmnist-oscillators.ini");
    assert_int_equal(c.pool, 1);
    assert_int_equal(c.batch, 32);
    assert_true(c.lr == 1e-3);
    assert_int_equal(c.optimizer, OPT_ADAM);
    assert_int_equal(c.train_limit, 0);
    rng_streams rng;
    rng_streams_init(&rng, 0);
    model m;
    char err[512] = "";
    int rc = model_build(&m, &c, 28, 28, 2, &rng, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(m.L[0].r_out, 16);      /* 16 patches */
    assert_int_equal(m.L[0].c_out, 49);
    assert_int_equal(m.L[2].r_out, 16);
    assert_int_equal(m.L[2].c_out, 100);     /* shared 100-oscillator layer */
    assert_int_equal(m.L[3].c_out, 1600);
    assert_int_equal(m.L[5].c_in, 1610);
    assert_int_equal(m.classes, 10);
    assert_int_equal(m.n_params, 100L * 100 + 100 + 1610L * 1610 + 1610 + 1);
    for (int i = 0; i < m.n_devices; i++) {
        assert_true(strstr(m.specs[i].options, "eta=0.1") && strstr(m.specs[i].options, "j_noise=0.2") &&
                    strstr(m.specs[i].options, "sigma=0.02"));
    }
    model_free(&m);
    rng_streams_free(&rng);
}

/* A driver's complaint about an option names the config line of that key. */
static void test_driver_errors_name_line(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *expect;
    } cases[] = {
        {"[device a]\ndriver = oscillators\nn = 16\ncolour = 3\n[model]\nlayer = physical a\nlayer = readout 10\n",
         "dev.ini:4: [device a] colour: "},
        {"[device a]\ndriver = oscillators\neta = x\n[model]\nlayer = physical a\nlayer = readout 10\n",
         "dev.ini:3: [device a] eta: "},
        {"[device a]\ndriver = nosuchdriver\n[model]\nlayer = physical a\nlayer = readout 10\n",
         "dev.ini:2: [device a] driver: "},
        {"[data]\nset = synthetic\n[device a]\ndriver = oscillators\nn = 16\n[model]\nlayer = pad 300\n"
         "layer = physical a\nlayer = readout 10\n",
         "dev.ini:8: [model] layer 2 (physical a): device takes 16 inputs"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_config c;
        char err[768] = "";
        assert_int_equal(config_parse_text(&c, cases[i].text, "dev.ini", err, sizeof(err)), 0);
        rng_streams rng;
        rng_streams_init(&rng, 0);
        model m;
        int rc = model_build(&m, &c, 14, 14, 2, &rng, err, sizeof(err));
        printf("  %s\n", err);
        assert_true(rc != 0);
        if (!strstr(err, cases[i].expect))
            fail_msg("'%s' lacks '%s'", err, cases[i].expect);
        model_free(&m);
        rng_streams_free(&rng);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_good_config),
        cmocka_unit_test(test_quickstart_ini_is_builtin),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_anchor_builds),
        cmocka_unit_test(test_driver_errors_name_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
