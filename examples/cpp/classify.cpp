// Classifies MNIST digits with a model saved by the mnist example, through
// Oar's C API (capi/include/oar.h): create a predictor from the model
// directory, set the input, run, read the output.
//
//   cargo run --release --example mnist -- --out runs/mnist   # saves runs/mnist/model
//   scripts/build_cpp_example.sh runs/mnist/model
//
// or by hand:
//
//   g++ -O2 -std=c++17 -I capi/include examples/cpp/classify.cpp -o classify
//       -L target/release -loar_capi -Wl,-rpath,$PWD/target/release [-DOAR_WITH_ZLIB -lz]
//   ./classify runs/mnist/model data/mnist/t10k-images-idx3-ubyte.gz --skip 8000
//
// Usage: classify MODEL_DIR IMAGES [--labels FILE] [--skip N] [--limit N]
//                 [--threads N] [--min-accuracy PERCENT]
//
// IMAGES and the labels are MNIST IDX files (gzip-compressed ones too when
// built with -DOAR_WITH_ZLIB); the labels default to the images' path with
// "images-idx3" replaced by "labels-idx1". The images are normalized as the
// mnist example trains on them ((x / 255 - 0.1307) / 0.3081) and fed in
// batches of the size the model was traced for (its input shape), the last
// one zero-padded. `--skip 8000` classifies the 2,000 images the mnist
// example holds out of the bundled set.

#include "oar.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef OAR_WITH_ZLIB
#include <zlib.h>
#endif

namespace {

// The MNIST normalization of the mnist example (oar_nn::data::Mnist), in the
// same float32 arithmetic.
const float kMean = static_cast<float>(0.1307);
const float kStd = static_cast<float>(0.3081);

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

// An Oar call's status, turned into an exception carrying oar_last_error().
void check(int rc, const char* what) {
    if (rc != OAR_OK) fail(std::string(what) + " failed (code " + std::to_string(rc) + "): " + oar_last_error());
}

struct PredictorDeleter {
    void operator()(OarPredictor* p) const { oar_predictor_destroy(p); }
};
using Predictor = std::unique_ptr<OarPredictor, PredictorDeleter>;

// The whole file, decompressed if it is gzip (with zlib; gzread passes
// uncompressed files through unchanged).
std::vector<unsigned char> read_file(const std::string& path) {
    std::vector<unsigned char> out;
    unsigned char buf[1 << 16];
#ifdef OAR_WITH_ZLIB
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) fail("cannot open " + path + ": " + std::strerror(errno));
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
    int err = Z_OK;
    const char* msg = gzerror(f, &err);
    bool bad = n < 0 || (err != Z_OK && err != Z_STREAM_END);
    std::string why = bad ? std::string(msg) : std::string();
    gzclose(f);
    if (bad) fail("reading " + path + ": " + why);
#else
    if (path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0)
        fail(path + " is gzip-compressed: decompress it (gunzip -k) or build with -DOAR_WITH_ZLIB -lz");
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("cannot open " + path + ": " + std::strerror(errno));
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    bool bad = std::ferror(f) != 0;
    std::fclose(f);
    if (bad) fail("reading " + path + " failed");
#endif
    return out;
}

uint32_t be32(const std::vector<unsigned char>& b, size_t at) {
    return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) | uint32_t(b[at + 3]);
}

// An IDX file of unsigned bytes: its dimensions and data.
struct Idx {
    std::vector<uint32_t> dims;
    std::vector<unsigned char> data;
};

Idx read_idx(const std::string& path, uint32_t magic) {
    std::vector<unsigned char> raw = read_file(path);
    if (raw.size() < 4 || be32(raw, 0) != magic)
        fail(path + ": not an IDX file with magic " + std::to_string(magic));
    uint32_t rank = magic & 0xff;
    size_t header = 4 + 4 * size_t(rank);
    if (raw.size() < header) fail(path + ": truncated header");
    Idx idx;
    size_t numel = 1;
    for (uint32_t i = 0; i < rank; ++i) {
        idx.dims.push_back(be32(raw, 4 + 4 * i));
        numel *= idx.dims.back();
    }
    if (raw.size() != header + numel)
        fail(path + ": expected " + std::to_string(numel) + " data bytes, found " + std::to_string(raw.size() - header));
    idx.data.assign(raw.begin() + header, raw.end());
    return idx;
}

std::string shape_str(const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

struct Args {
    std::string model_dir, images, labels;
    size_t skip = 0, limit = SIZE_MAX;
    int threads = 0;
    double min_accuracy = -1;
};

void usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s MODEL_DIR IMAGES [--labels FILE] [--skip N] [--limit N] [--threads N] "
                 "[--min-accuracy PERCENT]\n",
                 argv0);
}

Args parse(int argc, char** argv) {
    Args a;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail(arg + " needs a value");
            return argv[++i];
        };
        auto number = [&](const std::string& v) -> unsigned long long {
            char* end = nullptr;
            errno = 0;
            unsigned long long n = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || *end || errno || v[0] == '-') fail(arg + ": not a count: " + v);
            return n;
        };
        if (arg == "--labels") a.labels = value();
        else if (arg == "--skip") a.skip = number(value());
        else if (arg == "--limit") a.limit = number(value());
        else if (arg == "--threads") a.threads = int(number(value()));
        else if (arg == "--min-accuracy") a.min_accuracy = std::atof(value().c_str());
        else if (arg == "-h" || arg == "--help") {
            usage(argv[0]);
            std::exit(0);
        } else if (arg.rfind("--", 0) == 0) fail("unknown option " + arg);
        else positional.push_back(arg);
    }
    if (positional.size() != 2) {
        usage(argv[0]);
        std::exit(2);
    }
    a.model_dir = positional[0];
    a.images = positional[1];
    if (a.labels.empty()) {
        a.labels = a.images;
        size_t at = a.labels.rfind("images-idx3");
        if (at == std::string::npos) fail("cannot derive the labels file from " + a.images + "; pass --labels");
        a.labels.replace(at, std::strlen("images-idx3"), "labels-idx1");
    }
    return a;
}

int run(const Args& args) {
    // 1. The predictor, from the saved model directory.
    Predictor predictor(oar_predictor_create(args.model_dir.c_str(), args.threads));
    if (!predictor) fail("loading " + args.model_dir + ": " + oar_last_error());

    // 2. Its input: name and the shape it was traced for, [batch, 1, 28, 28].
    size_t inputs = 0;
    check(oar_predictor_input_count(predictor.get(), &inputs), "oar_predictor_input_count");
    if (inputs != 1) fail("expected a model with one input, found " + std::to_string(inputs));
    const char* name_ptr = oar_predictor_input_name(predictor.get(), 0);
    if (!name_ptr) fail(std::string("oar_predictor_input_name: ") + oar_last_error());
    const std::string name = name_ptr;
    size_t rank = 0;
    std::vector<int64_t> in_shape(8);
    check(oar_predictor_input_shape(predictor.get(), name.c_str(), in_shape.data(), in_shape.size(), &rank),
          "oar_predictor_input_shape");
    in_shape.resize(rank);
    if (rank < 2) fail("input " + name + " has shape " + shape_str(in_shape) + ", expected [batch, ...]");
    const size_t batch = size_t(in_shape[0]);
    size_t per_image = 1;
    for (size_t i = 1; i < rank; ++i) per_image *= size_t(in_shape[i]);

    // 3. The data.
    Idx images = read_idx(args.images, 0x803);
    Idx labels = read_idx(args.labels, 0x801);
    const size_t total = images.dims[0];
    if (labels.dims[0] != total) fail("the images and labels files disagree on the count");
    if (size_t(images.dims[1]) * images.dims[2] != per_image)
        fail("the model takes " + shape_str(in_shape) + " inputs, the images are " + std::to_string(images.dims[1]) +
             "x" + std::to_string(images.dims[2]));
    if (args.skip >= total) fail("--skip " + std::to_string(args.skip) + " leaves no images");
    const size_t n = std::min(total - args.skip, args.limit);
    std::printf("model %s: input %s %s; classifying images %zu..%zu of %s\n", args.model_dir.c_str(), name.c_str(),
                shape_str(in_shape).c_str(), args.skip, args.skip + n, args.images.c_str());

    // 4. Batches: set the input, run, read the logits.
    std::vector<float> input(batch * per_image);
    std::vector<float> logits;
    size_t classes = 0, correct = 0;
    std::vector<size_t> per_class(10, 0), per_class_correct(10, 0);
    auto t0 = std::chrono::steady_clock::now();
    for (size_t start = 0; start < n; start += batch) {
        const size_t rows = std::min(batch, n - start);
        const unsigned char* px = images.data.data() + (args.skip + start) * per_image;
        for (size_t i = 0; i < rows * per_image; ++i) input[i] = (float(px[i]) / 255.0f - kMean) / kStd;
        std::fill(input.begin() + rows * per_image, input.end(), 0.0f);  // pad the last batch

        check(oar_predictor_set_input(predictor.get(), name.c_str(), input.data(), in_shape.data(), in_shape.size()),
              "oar_predictor_set_input");
        check(oar_predictor_run(predictor.get()), "oar_predictor_run");
        if (logits.empty()) {
            std::vector<int64_t> out_shape(8);
            size_t out_rank = 0;
            check(oar_predictor_output_shape(predictor.get(), 0, out_shape.data(), out_shape.size(), &out_rank),
                  "oar_predictor_output_shape");
            out_shape.resize(out_rank);
            if (out_rank != 2 || size_t(out_shape[0]) != batch)
                fail("expected logits [" + std::to_string(batch) + ", classes], got " + shape_str(out_shape));
            classes = size_t(out_shape[1]);
            std::printf("output 0: logits %s\n", shape_str(out_shape).c_str());
            logits.resize(batch * classes);
        }
        check(oar_predictor_get_output(predictor.get(), 0, logits.data(), logits.size()), "oar_predictor_get_output");

        for (size_t r = 0; r < rows; ++r) {
            const float* row = logits.data() + r * classes;
            size_t best = 0;
            for (size_t c = 1; c < classes; ++c)
                if (row[c] > row[best]) best = c;
            const unsigned label = labels.data[args.skip + start + r];
            if (label < per_class.size()) {
                ++per_class[label];
                per_class_correct[label] += best == label;
            }
            correct += best == label;
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const double accuracy = 100.0 * double(correct) / double(n);
    std::printf("per-class accuracy:");
    for (size_t c = 0; c < per_class.size(); ++c)
        if (per_class[c]) std::printf(" %zu:%.1f%%", c, 100.0 * double(per_class_correct[c]) / double(per_class[c]));
    std::printf("\n%zu images in %.0f ms (%.0f images/s, batch %zu)\n", n, secs * 1e3, double(n) / secs, batch);
    std::printf("accuracy: %.2f%% (%zu / %zu)\n", accuracy, correct, n);
    if (args.min_accuracy >= 0 && accuracy < args.min_accuracy) {
        std::fprintf(stderr, "error: accuracy %.2f%% is below --min-accuracy %.2f%%\n", accuracy, args.min_accuracy);
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
