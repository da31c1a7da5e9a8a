/* edgemode-app: stream text from, or benchmark, a folder written by `edgemode genai`, through
 * onnxruntime-genai's C library.
 *
 *   edgemode-app FOLDER [--domains legal,med] [--prompt TEXT] [--max-new-tokens N] [--threads T]
 *   edgemode-app FOLDER --bench [--domains ...] [--prompt-tokens N] [--new-tokens M] [--repeat R] [--threads T]
 *
 * The libraries are loaded at run time (dlopen), so a missing or wrong one is a one-line error of
 * ours instead of the dynamic loader's, and the binary builds without them (cross-compiles too):
 * libonnxruntime-genai.so and libonnxruntime.so (or .so.1) beside the binary (it is linked with
 * rpath $ORIGIN) or on LD_LIBRARY_PATH; $ORT_LIB_PATH, if set, names onnxruntime's file. The
 * prototypes below are written from genai's documented C API (ort_genai_c.h), not copied from it.
 *
 * Greedy decoding, BOS first: genai creates its tokenizer with add_special_tokens=false whatever
 * the folder's tokenizer files say, so this program turns it on, as `edgemode run` encodes.
 * Every error is one line on stderr and exit status 1 (2 for bad arguments).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

typedef struct OgaResult OgaResult;
typedef struct OgaConfig OgaConfig;
typedef struct OgaModel OgaModel;
typedef struct OgaTokenizer OgaTokenizer;
typedef struct OgaTokenizerStream OgaTokenizerStream;
typedef struct OgaSequences OgaSequences;
typedef struct OgaGeneratorParams OgaGeneratorParams;
typedef struct OgaGenerator OgaGenerator;

/* Every genai function this program calls; members are named as the library's symbols. */
static struct {
    const char *(*OgaResultGetError)(const OgaResult *);
    void (*OgaDestroyResult)(OgaResult *);
    OgaResult *(*OgaCreateConfig)(const char *path, OgaConfig **out);
    OgaResult *(*OgaConfigOverlay)(OgaConfig *, const char *json);
    OgaResult *(*OgaCreateModelFromConfig)(const OgaConfig *, OgaModel **out);
    OgaResult *(*OgaCreateTokenizer)(const OgaModel *, OgaTokenizer **out);
    OgaResult *(*OgaUpdateTokenizerOptions)(OgaTokenizer *, const char *const *keys, const char *const *values, size_t n);
    OgaResult *(*OgaCreateSequences)(OgaSequences **out);
    OgaResult *(*OgaAppendTokenSequence)(const int32_t *tokens, size_t n, OgaSequences *);
    OgaResult *(*OgaTokenizerEncode)(const OgaTokenizer *, const char *text, OgaSequences *);
    size_t (*OgaSequencesGetSequenceCount)(const OgaSequences *, size_t index);
    OgaResult *(*OgaCreateTokenizerStream)(const OgaTokenizer *, OgaTokenizerStream **out);
    OgaResult *(*OgaTokenizerStreamDecode)(OgaTokenizerStream *, int32_t token, const char **out);
    OgaResult *(*OgaCreateGeneratorParams)(const OgaModel *, OgaGeneratorParams **out);
    OgaResult *(*OgaGeneratorParamsSetSearchNumber)(OgaGeneratorParams *, const char *name, double value);
    OgaResult *(*OgaCreateGenerator)(const OgaModel *, const OgaGeneratorParams *, OgaGenerator **out);
    OgaResult *(*OgaGenerator_AppendTokenSequences)(OgaGenerator *, const OgaSequences *);
    bool (*OgaGenerator_IsDone)(OgaGenerator *);
    OgaResult *(*OgaGenerator_GenerateNextToken)(OgaGenerator *);
    OgaResult *(*OgaGenerator_GetNextTokens)(const OgaGenerator *, const int32_t **out, size_t *count);
    void (*OgaDestroyGenerator)(OgaGenerator *);
    void (*OgaDestroyGeneratorParams)(OgaGeneratorParams *);
    void (*OgaDestroySequences)(OgaSequences *);
    void (*OgaDestroyTokenizerStream)(OgaTokenizerStream *);
    void (*OgaDestroyTokenizer)(OgaTokenizer *);
    void (*OgaDestroyModel)(OgaModel *);
    void (*OgaDestroyConfig)(OgaConfig *);
    void (*OgaShutdown)(void);
} oga;

#define SYMBOL(name) {#name, (void **)&oga.name}
static const struct { const char *name; void **slot; } SYMBOLS[] = {
    SYMBOL(OgaResultGetError), SYMBOL(OgaDestroyResult), SYMBOL(OgaCreateConfig), SYMBOL(OgaConfigOverlay),
    SYMBOL(OgaCreateModelFromConfig), SYMBOL(OgaCreateTokenizer), SYMBOL(OgaUpdateTokenizerOptions),
    SYMBOL(OgaCreateSequences), SYMBOL(OgaAppendTokenSequence), SYMBOL(OgaTokenizerEncode),
    SYMBOL(OgaSequencesGetSequenceCount), SYMBOL(OgaCreateTokenizerStream), SYMBOL(OgaTokenizerStreamDecode),
    SYMBOL(OgaCreateGeneratorParams), SYMBOL(OgaGeneratorParamsSetSearchNumber), SYMBOL(OgaCreateGenerator),
    SYMBOL(OgaGenerator_AppendTokenSequences), SYMBOL(OgaGenerator_IsDone), SYMBOL(OgaGenerator_GenerateNextToken),
    SYMBOL(OgaGenerator_GetNextTokens), SYMBOL(OgaDestroyGenerator), SYMBOL(OgaDestroyGeneratorParams),
    SYMBOL(OgaDestroySequences), SYMBOL(OgaDestroyTokenizerStream), SYMBOL(OgaDestroyTokenizer),
    SYMBOL(OgaDestroyModel), SYMBOL(OgaDestroyConfig), SYMBOL(OgaShutdown),
};

#define GENAI_LIBRARY "libonnxruntime-genai.so"
#define MAX_DECODERS 64 /* `edgemode genai` writes one per subset of at most 6 domains */
#define DEFAULT_PROMPT "Permission is hereby granted"
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_" /* domain names */

static void fail(int status, const char *format, ...) {
    char line[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    for (char *c = line; *c; c++) /* one line, whatever the library's message holds */
        if (*c == '\n' || *c == '\r') *c = ' ';
    fflush(stdout);
    fprintf(stderr, "edgemode-app: error: %s\n", line);
    exit(status);
}

static void check(OgaResult *result, const char *what) {
    if (result) fail(1, "%s: %s", what, oga.OgaResultGetError(result));
}

/* Libraries ------------------------------------------------------------------------------------ */

static void load_libraries(void) {
    /* onnxruntime first, so that a missing one is named (genai would only say "Failed to load
     * onnxruntime"); ORT_LIB_PATH then points genai at the very file loaded. */
    const char *ort = getenv("ORT_LIB_PATH");
    if (ort && !*ort) ort = NULL;
    const char *names[] = {"libonnxruntime.so", "libonnxruntime.so.1"};
    void *handle = NULL;
    char why[1024] = "";
    for (size_t i = 0; i < (ort ? 1 : 2) && !handle; i++) {
        handle = dlopen(ort ? ort : names[i], RTLD_NOW | RTLD_GLOBAL);
        if (!handle && !why[0]) snprintf(why, sizeof why, "%s", dlerror()); /* the first name's reason */
    }
    if (!handle)
        fail(1, "cannot load onnxruntime (%s): put libonnxruntime.so beside edgemode-app or on LD_LIBRARY_PATH, "
                "or set ORT_LIB_PATH to its file", why);
    Dl_info where;
    void *api = dlsym(handle, "OrtGetApiBase");
    if (!api || !dladdr(api, &where)) fail(1, "%s is not onnxruntime's library (no OrtGetApiBase)", ort ? ort : "libonnxruntime.so");
    setenv("ORT_LIB_PATH", where.dli_fname, 1);
    void *genai = dlopen(GENAI_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!genai)
        fail(1, "cannot load %s (%s): put it beside edgemode-app or on LD_LIBRARY_PATH", GENAI_LIBRARY, dlerror());
    for (size_t i = 0; i < sizeof SYMBOLS / sizeof *SYMBOLS; i++) {
        *SYMBOLS[i].slot = dlsym(genai, SYMBOLS[i].name);
        if (!*SYMBOLS[i].slot)
            fail(1, "%s has no %s: it is not onnxruntime-genai's C library, or one older than 0.18", GENAI_LIBRARY,
                 SYMBOLS[i].name);
    }
}

/* The folder ----------------------------------------------------------------------------------- */

typedef struct {
    char file[256];     /* decoder.legal.med.onnx */
    char names[8][65];  /* legal, med */
    int count;
} DomainSet;

/* "decoder.legal.med.onnx" -> {legal, med}, "decoder.onnx" -> {}; false for any other file name. */
static bool parse_decoder(const char *file, DomainSet *set) {
    size_t n = strlen(file);
    set->count = 0;
    snprintf(set->file, sizeof set->file, "%s", file);
    if (!strcmp(file, "decoder.onnx")) return true;
    if (n >= sizeof set->file || n < 14 || strncmp(file, "decoder.", 8) || strcmp(file + n - 5, ".onnx")) return false;
    char middle[256];
    snprintf(middle, sizeof middle, "%.*s", (int)(n - 13), file + 8); /* between "decoder." and ".onnx" */
    for (char *save, *d = strtok_r(middle, ".", &save); d; d = strtok_r(NULL, ".", &save)) {
        if (set->count == 8 || strlen(d) > 64 || strspn(d, NAME_CHARS) != strlen(d)) return false;
        snprintf(set->names[set->count++], 65, "%s", d);
    }
    return set->count > 0;
}

static bool same_set(const DomainSet *a, const DomainSet *b) {
    if (a->count != b->count) return false;
    for (int i = 0; i < a->count; i++) {
        bool found = false;
        for (int j = 0; j < b->count; j++) found |= !strcmp(a->names[i], b->names[j]);
        if (!found) return false;
    }
    return true;
}

static void describe(const DomainSet *set, char *out, size_t size) {
    size_t used = (size_t)snprintf(out, size, "{");
    for (int i = 0; i < set->count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? "," : "", set->names[i]);
    if (used < size) snprintf(out + used, size - used, "}");
}

static int smaller_set(const void *a, const void *b) {
    const DomainSet *x = a, *y = b;
    return x->count != y->count ? x->count - y->count : strcmp(x->file, y->file);
}

/* The decoders in the folder, each a domain set, smallest first. */
static int list_decoders(const char *folder, DomainSet *sets) {
    DIR *dir = opendir(folder);
    if (!dir) fail(1, "cannot read %s: %s", folder, strerror(errno));
    int count = 0;
    for (struct dirent *entry; (entry = readdir(dir)) && count < MAX_DECODERS;)
        if (parse_decoder(entry->d_name, &sets[count])) count++;
    closedir(dir);
    qsort(sets, (size_t)count, sizeof *sets, smaller_set);
    return count;
}

/* The value of "key" in genai_config.json as `edgemode genai` writes it (a number or a plain
 * string; this is no general JSON reader). */
static bool config_value(const char *folder, const char *key, char *out, size_t size) {
    char path[4096], text[1 << 16], needle[128];
    snprintf(path, sizeof path, "%s/genai_config.json", folder);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *at = strstr(text, needle);
    if (!at) return false;
    at += strlen(needle);
    at += strspn(at, " \t\r\n\"");
    size_t len = strcspn(at, "\",}\r\n");
    snprintf(out, size, "%.*s", (int)len, at);
    return len > 0;
}

static void check_folder(const char *folder) {
    struct stat st;
    char path[4096];
    if (stat(folder, &st) != 0) fail(1, "no folder at %s", folder);
    if (!S_ISDIR(st.st_mode)) fail(1, "%s is not a folder", folder);
    snprintf(path, sizeof path, "%s/genai_config.json", folder);
    if (stat(path, &st) != 0) fail(1, "%s is not a folder written by `edgemode genai` (no genai_config.json)", folder);
}

/* The set --domains asks for (NULL: the folder's default), checked against the folder's decoders. */
static DomainSet choose_set(const char *folder, const char *domains) {
    DomainSet sets[MAX_DECODERS], wanted = {.count = 0};
    int count = list_decoders(folder, sets);
    if (!domains) {
        char file[256];
        if (!config_value(folder, "filename", file, sizeof file) || !parse_decoder(file, &wanted))
            fail(1, "%s/genai_config.json names no decoder.*.onnx", folder);
    } else {
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", domains);
        for (char *save, *d = strtok_r(copy, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
            if (wanted.count == 8) fail(2, "--domains: too many domains");
            snprintf(wanted.names[wanted.count++], 65, "%s", d);
        }
    }
    for (int i = 0; i < count; i++)
        if (same_set(&wanted, &sets[i])) return sets[i];
    char asked[600], have[4096] = "", one[600];
    describe(&wanted, asked, sizeof asked);
    for (int i = 0; i < count; i++) {
        describe(&sets[i], one, sizeof one);
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? " " : "", one);
    }
    fail(1, "unknown domain set %s: %s has decoders for %s", asked, folder, count ? have : "no set");
    return wanted;
}

static OgaModel *load_model(const char *folder, const DomainSet *set, int threads) {
    OgaConfig *config;
    OgaModel *model;
    char overlay[512];
    check(oga.OgaCreateConfig(folder, &config), "loading genai_config.json");
    snprintf(overlay, sizeof overlay, "{\"model\": {\"decoder\": {\"filename\": \"%s\"}}}", set->file);
    check(oga.OgaConfigOverlay(config, overlay), "overlaying the decoder");
    if (threads > 0) {
        snprintf(overlay, sizeof overlay, "{\"model\": {\"decoder\": {\"session_options\": {\"intra_op_num_threads\": %d}}}}", threads);
        check(oga.OgaConfigOverlay(config, overlay), "overlaying --threads");
    }
    check(oga.OgaCreateModelFromConfig(config, &model), "loading the model");
    oga.OgaDestroyConfig(config);
    return model;
}

/* Generation and benchmark ---------------------------------------------------------------------- */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* A fresh request on `prompt`, run, ready for its first token; `exact` holds EOS off until `length`. */
static OgaGenerator *start(const OgaModel *model, const OgaSequences *prompt, size_t length, bool exact) {
    OgaGeneratorParams *params;
    OgaGenerator *generator;
    check(oga.OgaCreateGeneratorParams(model, &params), "creating generator params");
    check(oga.OgaGeneratorParamsSetSearchNumber(params, "max_length", (double)length), "setting max_length");
    if (exact) check(oga.OgaGeneratorParamsSetSearchNumber(params, "min_length", (double)length), "setting min_length");
    check(oga.OgaCreateGenerator(model, params, &generator), "creating a generator");
    oga.OgaDestroyGeneratorParams(params);
    check(oga.OgaGenerator_AppendTokenSequences(generator, prompt), "running the prompt");
    return generator;
}

static int32_t next_token(OgaGenerator *generator) {
    const int32_t *tokens;
    size_t count;
    check(oga.OgaGenerator_GenerateNextToken(generator), "generating");
    check(oga.OgaGenerator_GetNextTokens(generator, &tokens, &count), "reading the token");
    return tokens[0];
}

static void generate(const OgaModel *model, const char *prompt, int max_new_tokens) {
    OgaTokenizer *tokenizer;
    OgaTokenizerStream *stream;
    OgaSequences *ids;
    const char *bos[] = {"add_special_tokens"}, *on[] = {"true"};
    check(oga.OgaCreateTokenizer(model, &tokenizer), "loading the tokenizer");
    check(oga.OgaUpdateTokenizerOptions(tokenizer, bos, on, 1), "setting add_special_tokens");
    check(oga.OgaCreateSequences(&ids), "creating sequences");
    check(oga.OgaTokenizerEncode(tokenizer, prompt, ids), "encoding the prompt");
    check(oga.OgaCreateTokenizerStream(tokenizer, &stream), "creating a tokenizer stream");
    OgaGenerator *generator = start(model, ids, oga.OgaSequencesGetSequenceCount(ids, 0) + (size_t)max_new_tokens, false);
    while (!oga.OgaGenerator_IsDone(generator)) {
        const char *piece;
        check(oga.OgaTokenizerStreamDecode(stream, next_token(generator), &piece), "decoding");
        fputs(piece, stdout);
        fflush(stdout);
    }
    fputs("\n", stdout);
    oga.OgaDestroyGenerator(generator);
    oga.OgaDestroyTokenizerStream(stream);
    oga.OgaDestroySequences(ids);
    oga.OgaDestroyTokenizer(tokenizer);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, by_value);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* Peak resident set size in MB: VmHWM, as `edgemode bench` reads it. */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb < 0) {
        struct rusage usage;
        getrusage(RUSAGE_SELF, &usage);
        kb = usage.ru_maxrss;
    }
    return kb / 1024.0;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

/* Like `edgemode bench`: a fixed prompt of N seeded token ids, exactly M greedy tokens per repeat
 * (EOS held off with min_length), each repeat a fresh request; medians over the repeats. */
static void bench(const char *folder, const DomainSet *set, int prompt_tokens, int new_tokens, int repeat, int threads) {
    char vocab_text[32];
    if (!config_value(folder, "vocab_size", vocab_text, sizeof vocab_text) || atol(vocab_text) < 1)
        fail(1, "%s/genai_config.json has no vocab_size", folder);
    long vocab = atol(vocab_text);
    double started = now();
    OgaModel *model = load_model(folder, set, threads);
    double load_s = now() - started;
    int32_t *prompt = malloc(sizeof *prompt * (size_t)prompt_tokens);
    double *ttft = malloc(sizeof *ttft * (size_t)repeat), *rate = malloc(sizeof *rate * (size_t)repeat);
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < prompt_tokens; i++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        prompt[i] = (int32_t)((state >> 33) % (uint64_t)vocab);
    }
    OgaSequences *ids;
    check(oga.OgaCreateSequences(&ids), "creating sequences");
    check(oga.OgaAppendTokenSequence(prompt, (size_t)prompt_tokens, ids), "making the prompt");
    size_t length = (size_t)prompt_tokens + (size_t)new_tokens;
    for (int r = 0; r < repeat; r++) {
        double t0 = now(), first = 0, last = 0;
        OgaGenerator *generator = start(model, ids, length, true);
        for (int i = 0; i < new_tokens; i++) {
            next_token(generator);
            last = now();
            if (i == 0) first = last;
        }
        ttft[r] = (first - t0) * 1000;
        rate[r] = (new_tokens - 1) / (last - first);
        oga.OgaDestroyGenerator(generator);
    }
    double peak = peak_rss_mb();
    struct utsname machine;
    uname(&machine);
    printf("{\"runtime\": \"onnxruntime-genai C API\", \"folder\": ");
    json_string(folder);
    printf(", \"decoder\": ");
    json_string(set->file);
    printf(", \"domains\": [");
    for (int i = 0; i < set->count; i++) {
        printf(i ? ", " : "");
        json_string(set->names[i]);
    }
    printf("], \"load_s\": %.6f, \"ttft_ms\": %.3f, \"decode_tok_s\": %.3f, \"peak_rss_mb\": %.1f, "
           "\"prompt_tokens\": %d, \"new_tokens\": %d, \"repeat\": %d, \"threads\": ",
           load_s, median(ttft, repeat), median(rate, repeat), peak, prompt_tokens, new_tokens, repeat);
    if (threads > 0) printf("%d", threads);
    else printf("null");
    printf(", \"arch\": ");
    json_string(machine.machine);
    printf("}\n");
    oga.OgaDestroySequences(ids);
    oga.OgaDestroyModel(model);
    free(prompt), free(ttft), free(rate);
}

/* Arguments ------------------------------------------------------------------------------------ */

static const char USAGE[] =
    "usage: edgemode-app FOLDER [--domains SET] [--prompt TEXT] [--max-new-tokens N] [--threads T]\n"
    "       edgemode-app FOLDER --bench [--domains SET] [--prompt-tokens N] [--new-tokens M] [--repeat R] [--threads T]\n"
    "FOLDER is written by `edgemode genai`; SET is comma-separated domains, \"\" for the backbone alone\n"
    "(default: the folder's own). Text is greedy, BOS first; --bench prints one JSON object.\n"
    "Libraries: libonnxruntime-genai.so and libonnxruntime.so beside the binary or on LD_LIBRARY_PATH\n"
    "($ORT_LIB_PATH, if set, names onnxruntime's file).\n";

static int positive(const char *flag, const char *value) {
    char *end;
    long n = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || n < 1 || n > 1000000) fail(2, "%s needs a whole number from 1 to 1000000", flag);
    return (int)n;
}

int main(int argc, char **argv) {
    const char *folder = NULL, *domains = NULL, *prompt = DEFAULT_PROMPT;
    int max_new_tokens = 128, prompt_tokens = 128, new_tokens = 64, repeat = 3, threads = 0;
    bool bench_mode = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = true;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(arg, "--bench")) bench_mode = true, takes_value = false;
        else if (!strcmp(arg, "--domains") && value) domains = value;
        else if (!strcmp(arg, "--prompt") && value) prompt = value;
        else if (!strcmp(arg, "--max-new-tokens")) max_new_tokens = positive(arg, value);
        else if (!strcmp(arg, "--prompt-tokens")) prompt_tokens = positive(arg, value);
        else if (!strcmp(arg, "--new-tokens")) new_tokens = positive(arg, value);
        else if (!strcmp(arg, "--repeat")) repeat = positive(arg, value);
        else if (!strcmp(arg, "--threads")) threads = positive(arg, value);
        else if (arg[0] != '-' && !folder) folder = arg, takes_value = false;
        else fail(2, "unexpected argument %s (see --help)", arg);
        i += takes_value;
    }
    if (!folder) fail(2, "no FOLDER given (see --help)");
    if (bench_mode && new_tokens < 2) fail(2, "--new-tokens must be at least 2 to time decoding");
    check_folder(folder);
    DomainSet set = choose_set(folder, domains);
    load_libraries();
    if (bench_mode) {
        bench(folder, &set, prompt_tokens, new_tokens, repeat, threads);
    } else {
        OgaModel *model = load_model(folder, &set, threads);
        generate(model, prompt, max_new_tokens);
        oga.OgaDestroyModel(model);
    }
    oga.OgaShutdown();
    return 0;
}
