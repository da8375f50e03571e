#include "ckptkit/io/torch_bin.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "ckptkit/core/error.hpp"
#include "ckptkit/core/strings.hpp"

namespace ckpt {
namespace {

// --- zip (the subset torch's writer produces: stored entries, ZIP64 when large) ---------------

struct ZipEntry {
  std::uint64_t offset = 0;  // of the data, in the file
  std::uint64_t size = 0;
};

class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, std::uint64_t at, const std::string& file)
      : bytes_(bytes), at_(at), file_(file) {}
  std::uint64_t u(int n) {
    need(static_cast<std::uint64_t>(n));
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i)
      v |= static_cast<std::uint64_t>(bytes_[at_ + static_cast<std::uint64_t>(i)]) << (8 * i);
    at_ += static_cast<std::uint64_t>(n);
    return v;
  }
  std::string str(std::uint64_t n) {
    need(n);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + at_), n);
    at_ += n;
    return s;
  }
  void skip(std::uint64_t n) {
    need(n);
    at_ += n;
  }
  std::uint64_t at() const { return at_; }

 private:
  void need(std::uint64_t n) const {
    if (at_ > bytes_.size() || n > bytes_.size() - at_)
      fail(ErrorKind::Format, file_ + ": truncated zip structure");
  }
  std::span<const std::byte> bytes_;
  std::uint64_t at_;
  const std::string& file_;
};

constexpr std::uint32_t kEocd = 0x06054b50, kEocd64 = 0x06064b50, kLocator64 = 0x07064b50,
                        kCentral = 0x02014b50, kLocal = 0x04034b50;

std::map<std::string, ZipEntry> read_zip(std::span<const std::byte> f, const std::string& file) {
  if (f.size() < 22) fail(ErrorKind::Format, file + ": too small for a zip archive");
  // The end-of-central-directory record: within the last 64 KiB + 22 bytes (its comment).
  std::optional<std::uint64_t> eocd;
  const std::uint64_t lowest = f.size() > 65557 ? f.size() - 65557 : 0;
  for (std::uint64_t p = f.size() - 22 + 1; p-- > lowest;)
    if (Cursor(f, p, file).u(4) == kEocd) {
      eocd = p;
      break;
    }
  if (!eocd) fail(ErrorKind::Format, file + ": no zip end-of-central-directory record");
  Cursor e(f, *eocd + 4, file);
  e.skip(2 + 2 + 2);  // disk numbers, entries on this disk
  std::uint64_t count = e.u(2);
  std::uint64_t cd_size = e.u(4), cd_offset = e.u(4);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (*eocd < 20) fail(ErrorKind::Format, file + ": ZIP64 locator missing");
    Cursor l(f, *eocd - 20, file);
    if (l.u(4) != kLocator64) fail(ErrorKind::Format, file + ": ZIP64 locator missing");
    l.skip(4);
    Cursor z(f, l.u(8), file);
    if (z.u(4) != kEocd64) fail(ErrorKind::Format, file + ": bad ZIP64 end record");
    z.skip(8 + 2 + 2 + 4 + 4 + 8);
    count = z.u(8);
    cd_size = z.u(8);
    cd_offset = z.u(8);
  }
  if (cd_offset > f.size() || cd_size > f.size() - cd_offset || count > cd_size / 46)
    fail(ErrorKind::Format, file + ": central directory outside the file");
  std::map<std::string, ZipEntry> entries;
  Cursor c(f, cd_offset, file);
  for (std::uint64_t i = 0; i < count; ++i) {
    if (c.u(4) != kCentral) fail(ErrorKind::Format, file + ": bad central directory entry");
    c.skip(2 + 2 + 2);  // versions, flags
    const std::uint64_t compression = c.u(2);
    c.skip(2 + 2 + 4);  // time, date, crc
    std::uint64_t csize = c.u(4), usize = c.u(4);
    const std::uint64_t name_len = c.u(2), extra_len = c.u(2), comment_len = c.u(2);
    c.skip(2 + 2 + 4);
    std::uint64_t local = c.u(4);
    const std::string name = c.str(name_len);
    const std::uint64_t extra_end = c.at() + extra_len;
    while (c.at() + 4 <= extra_end) {
      const std::uint64_t id = c.u(2), len = c.u(2);
      const std::uint64_t next = c.at() + len;
      if (next > extra_end)
        fail(ErrorKind::Format, located(file, printable(name), "bad zip extra field"));
      if (id == 1) {  // ZIP64: the 32-bit fields that overflowed, in this order
        if (usize == 0xFFFFFFFF && c.at() + 8 <= next) usize = c.u(8);
        if (csize == 0xFFFFFFFF && c.at() + 8 <= next) csize = c.u(8);
        if (local == 0xFFFFFFFF && c.at() + 8 <= next) local = c.u(8);
      }
      c.skip(next - c.at());
    }
    c.skip(extra_end - c.at() + comment_len);
    if (compression != 0)
      fail(ErrorKind::Unsupported,
           located(file, printable(name), "compressed zip entry (torch.save writes them stored)"));
    if (csize != usize)
      fail(ErrorKind::Format, located(file, printable(name), "stored entry sizes differ"));
    Cursor h(f, local, file);
    if (h.u(4) != kLocal)
      fail(ErrorKind::Format, located(file, printable(name), "bad zip local header"));
    h.skip(2 + 2 + 2 + 2 + 2 + 4 + 4 + 4);
    const std::uint64_t lname = h.u(2), lextra = h.u(2);
    h.skip(lname);
    h.skip(lextra);
    const std::uint64_t data = h.at();
    if (data > f.size() || usize > f.size() - data)
      fail(ErrorKind::Format, located(file, printable(name), "zip entry data outside the file"));
    if (!entries.emplace(name, ZipEntry{data, usize}).second)
      fail(ErrorKind::Format, located(file, printable(name), "zip entry named twice"));
  }
  return entries;
}

// --- the pickle subset -----------------------------------------------------------------------

constexpr int kMaxDepth = 16;

struct Value;
using Ref = std::shared_ptr<Value>;

struct Value {
  enum class Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    Tuple,
    List,
    Dict,
    Global,
    Storage,
    Tensor
  };
  Kind kind = Kind::None;
  std::int64_t i = 0;  // Int, Bool; Storage: numel; Tensor: storage offset
  double f = 0;
  std::string s;             // Str, Bytes; Global "module name"; Storage: key
  std::vector<Ref> items;    // Tuple, List; Dict: key, value, key, value...; Tensor: storage
  DType dtype = DType::F32;  // Storage
  Shape size, stride;        // Tensor
  int depth = 0;
  bool frozen = false;  // placed inside another container: never modified again
};

Ref make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

struct StorageType {
  const char* name;
  DType dtype;
};
constexpr StorageType kStorages[] = {
    {"FloatStorage", DType::F32},  {"HalfStorage", DType::F16}, {"BFloat16Storage", DType::BF16},
    {"DoubleStorage", DType::F64}, {"LongStorage", DType::I64}, {"IntStorage", DType::I32},
    {"ShortStorage", DType::I16},  {"CharStorage", DType::I8},  {"ByteStorage", DType::U8},
    {"BoolStorage", DType::Bool}};

bool allowed_global(const std::string& g) {
  if (g == "collections OrderedDict" || g == "torch._utils _rebuild_tensor_v2" ||
      g == "torch._utils _rebuild_parameter" || g == "torch._utils _rebuild_parameter_with_state")
    return true;
  for (const auto& s : kStorages)
    if (g == std::string("torch ") + s.name) return true;
  return false;
}

class Unpickler {
 public:
  Unpickler(std::span<const std::byte> p, const std::string& where) : p_(p), where_(where) {}

  Ref run() {
    while (true) {
      const auto op = static_cast<unsigned char>(byte());
      switch (op) {
        case 0x80:  // PROTO
          if (static_cast<unsigned char>(byte()) > 5) bad("pickle protocol above 5");
          break;
        case 0x95:  // FRAME: a length hint
          take(8);
          break;
        case '(':
          marks_.push_back(stack_.size());
          break;
        case '.':
          if (stack_.size() != 1 || !marks_.empty()) bad("pickle ends with a malformed stack");
          return stack_.back();
        case '}':
          push(make(Value::Kind::Dict));
          break;
        case ']':
          push(make(Value::Kind::List));
          break;
        case ')':
          push(make(Value::Kind::Tuple));
          break;
        case 'N':
          push(make(Value::Kind::None));
          break;
        case 0x88:
        case 0x89: {
          auto v = make(Value::Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'J':
          push_int(static_cast<std::int32_t>(le(4)));
          break;
        case 'K':
          push_int(static_cast<std::int64_t>(le(1)));
          break;
        case 'M':
          push_int(static_cast<std::int64_t>(le(2)));
          break;
        case 0x8a: {  // LONG1: n little-endian two's complement bytes
          const std::uint64_t n = le(1);
          if (n > 8) bad("integer wider than 64 bits");
          std::uint64_t v = n ? le(static_cast<int>(n)) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~std::uint64_t{0} << (8 * n);
          push_int(static_cast<std::int64_t>(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          std::uint64_t bits = 0;
          for (int i = 0; i < 8; ++i)
            bits = (bits << 8) | static_cast<std::uint64_t>(static_cast<unsigned char>(byte()));
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X':
          push_text(Value::Kind::Str, le(4));
          break;
        case 0x8c:
          push_text(Value::Kind::Str, le(1));
          break;
        case 0x8d:
          push_text(Value::Kind::Str, le(8));
          break;
        case 'B':
          push_text(Value::Kind::Bytes, le(4));
          break;
        case 'C':
          push_text(Value::Kind::Bytes, le(1));
          break;
        case 0x8e:
          push_text(Value::Kind::Bytes, le(8));
          break;
        case 'q':
          memo_[le(1)] = top();
          break;
        case 'r':
          memo_[le(4)] = top();
          break;
        case 0x94:
          memo_[memo_.size()] = top();
          break;
        case 'h':
          get(le(1));
          break;
        case 'j':
          get(le(4));
          break;
        case 't':
        case 0x85:
        case 0x86:
        case 0x87: {
          std::vector<Ref> items = op == 't' ? pop_mark() : pop_n(op - 0x84u);
          auto v = make(Value::Kind::Tuple);
          for (auto& x : items)
            adopt(*v, std::move(x));
          push(v);
          break;
        }
        case 'a': {
          Ref x = pop();
          adopt(open_container(Value::Kind::List), std::move(x));
          break;
        }
        case 'e': {
          std::vector<Ref> xs = pop_mark();
          Value& list = open_container(Value::Kind::List);
          for (auto& x : xs)
            adopt(list, std::move(x));
          break;
        }
        case 's': {
          Ref v = pop(), k = pop();
          Value& d = open_container(Value::Kind::Dict);
          adopt(d, std::move(k));
          adopt(d, std::move(v));
          break;
        }
        case 'u': {
          std::vector<Ref> xs = pop_mark();
          if (xs.size() % 2) bad("SETITEMS with an odd number of items");
          Value& d = open_container(Value::Kind::Dict);
          for (auto& x : xs)
            adopt(d, std::move(x));
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module = line(), name = line();
          push_global(module + " " + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Ref name = pop(), module = pop();
          if (module->kind != Value::Kind::Str || name->kind != Value::Kind::Str)
            bad("STACK_GLOBAL of non-strings");
          push_global(module->s + " " + name->s);
          break;
        }
        case 'Q':
          push(persistent(pop()));
          break;
        case 'R': {
          Ref args = pop(), fn = pop();
          push(reduce(*fn, *args));
          break;
        }
        case 'b': {  // BUILD: state for OrderedDict (_metadata) or a parameter; nothing to keep
          pop();
          if (stack_.empty()) bad("BUILD on an empty stack");
          const auto k = stack_.back()->kind;
          if (k != Value::Kind::Dict && k != Value::Kind::Tensor)
            bad("BUILD on something that is not a state dict or tensor");
          break;
        }
        case '0':  // POP
          pop();
          break;
        default: {
          char buf[64];
          std::snprintf(buf, sizeof buf, "pickle opcode 0x%02x is not allowed", op);
          fail(ErrorKind::Unsupported, where_ + ": " + buf + " (torch.load weights_only subset)");
        }
      }
    }
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail(ErrorKind::Format, where_ + ": " + what);
  }
  std::byte byte() {
    if (at_ >= p_.size()) bad("pickle truncated (no STOP)");
    return p_[at_++];
  }
  std::span<const std::byte> take(std::uint64_t n) {
    if (n > p_.size() - at_) bad("pickle truncated");
    auto s = p_.subspan(at_, n);
    at_ += n;
    return s;
  }
  std::uint64_t le(int n) {
    std::uint64_t v = 0;
    const auto b = take(static_cast<std::uint64_t>(n));
    for (int i = 0; i < n; ++i)
      v |= static_cast<std::uint64_t>(b[static_cast<std::size_t>(i)]) << (8 * i);
    return v;
  }
  std::string line() {
    std::string s;
    while (true) {
      const char c = static_cast<char>(byte());
      if (c == '\n') return s;
      if (s.size() > 256) bad("GLOBAL name too long");
      s.push_back(c);
    }
  }
  void push(Ref v) { stack_.push_back(std::move(v)); }
  void push_int(std::int64_t i) {
    auto v = make(Value::Kind::Int);
    v->i = i;
    push(v);
  }
  void push_text(Value::Kind k, std::uint64_t n) {
    const auto b = take(n);
    auto v = make(k);
    v->s.assign(reinterpret_cast<const char*>(b.data()), b.size());
    push(v);
  }
  void push_global(const std::string& g) {
    if (!allowed_global(g))
      fail(ErrorKind::Unsupported,
           where_ + ": pickle GLOBAL '" + printable(g) +
               "' is not allowed (only what torch.save writes for a state dict; nothing is run)");
    auto v = make(Value::Kind::Global);
    v->s = g;
    push(v);
  }
  Ref top() const {
    if (stack_.empty()) bad("PUT on an empty stack");
    return stack_.back();
  }
  void get(std::uint64_t i) {
    const auto it = memo_.find(i);
    if (it == memo_.end()) bad("GET of an unknown memo slot");
    push(it->second);
  }
  Ref pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      bad("pickle stack underflow");
    Ref v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  std::vector<Ref> pop_n(unsigned n) {
    std::vector<Ref> out(n);
    for (unsigned i = n; i-- > 0;)
      out[i] = pop();
    return out;
  }
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) bad("pickle MARK missing");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> out(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                         std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return out;
  }
  Value& open_container(Value::Kind k) {
    if (stack_.empty() || stack_.back()->kind != k) bad("item added to a non-container");
    Value& c = *stack_.back();
    if (c.frozen) bad("container modified after it was placed in another");
    return c;
  }
  void adopt(Value& parent, Ref child) {
    if (child.get() == &parent) bad("container placed in itself");
    if (child->kind == Value::Kind::Tuple || child->kind == Value::Kind::List ||
        child->kind == Value::Kind::Dict || child->kind == Value::Kind::Tensor) {
      child->frozen = true;
      parent.depth = std::max(parent.depth, child->depth + 1);
      if (parent.depth > kMaxDepth) bad("pickle nested deeper than 16");
    }
    parent.items.push_back(std::move(child));
  }

  Ref persistent(const Ref& pid) {
    // ('storage', torch.<T>Storage, key, location, numel), as torch.save writes it.
    const auto& t = pid->items;
    if (pid->kind != Value::Kind::Tuple || t.size() != 5 || t[0]->kind != Value::Kind::Str ||
        t[0]->s != "storage" || t[1]->kind != Value::Kind::Global ||
        t[2]->kind != Value::Kind::Str || t[4]->kind != Value::Kind::Int || t[4]->i < 0)
      bad("persistent id is not a torch storage reference");
    const auto it = storages_.find(t[2]->s);
    if (it != storages_.end()) return it->second;
    auto s = make(Value::Kind::Storage);
    s->s = t[2]->s;
    s->i = t[4]->i;
    bool known = false;
    for (const auto& st : kStorages)
      if (t[1]->s == std::string("torch ") + st.name) {
        s->dtype = st.dtype;
        known = true;
      }
    if (!known) bad("storage type '" + printable(t[1]->s) + "' is not a storage");
    storages_[s->s] = s;
    return s;
  }

  Shape ints(const Value& tuple, const char* what) const {
    if (tuple.kind != Value::Kind::Tuple) bad(std::string(what) + " is not a tuple");
    Shape out;
    for (const auto& x : tuple.items) {
      if (x->kind != Value::Kind::Int || x->i < 0) bad(std::string(what) + " holds a non-index");
      out.push_back(x->i);
    }
    return out;
  }

  Ref reduce(const Value& fn, const Value& args) {
    if (fn.kind != Value::Kind::Global || args.kind != Value::Kind::Tuple)
      bad("REDUCE of something that is not an allowed global");
    const auto& a = args.items;
    if (fn.s == "collections OrderedDict") {
      if (!a.empty()) bad("OrderedDict built from arguments");
      return make(Value::Kind::Dict);
    }
    if (fn.s == "torch._utils _rebuild_tensor_v2") {
      if (a.size() < 6 || a.size() > 7 || a[0]->kind != Value::Kind::Storage ||
          a[1]->kind != Value::Kind::Int || a[1]->i < 0)
        bad("_rebuild_tensor_v2 with unexpected arguments");
      auto t = make(Value::Kind::Tensor);
      t->items = {a[0]};
      t->i = a[1]->i;
      t->size = ints(*a[2], "tensor size");
      t->stride = ints(*a[3], "tensor stride");
      if (t->size.size() != t->stride.size()) bad("tensor size and stride differ in length");
      return t;
    }
    if (fn.s == "torch._utils _rebuild_parameter" ||
        fn.s == "torch._utils _rebuild_parameter_with_state") {
      if (a.size() < 3 || a[0]->kind != Value::Kind::Tensor)
        bad("_rebuild_parameter with unexpected arguments");
      return a[0];
    }
    bad("REDUCE of '" + printable(fn.s) + "'");
  }

  std::span<const std::byte> p_;
  std::size_t at_ = 0;
  std::string where_;
  std::vector<Ref> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Ref> memo_;
  std::map<std::string, Ref> storages_;
};

/// Elements a view reaches past its offset: 1 + Σ (size−1)·stride (0 for an empty tensor).
std::optional<std::uint64_t> extent(const Shape& size, const Shape& stride) {
  std::uint64_t e = 1;
  for (std::size_t d = 0; d < size.size(); ++d) {
    if (size[d] == 0) return 0;
    const auto s = static_cast<std::uint64_t>(size[d] - 1),
               st = static_cast<std::uint64_t>(stride[d]);
    if (st != 0 && s > (std::numeric_limits<std::uint64_t>::max() / 2) / st) return std::nullopt;
    e += s * st;
  }
  return e;
}

bool contiguous(const Shape& size, const Shape& stride) {
  std::int64_t expect = 1;
  for (std::size_t d = size.size(); d-- > 0;) {
    if (size[d] != 1 && stride[d] != expect) return false;
    expect *= size[d];
  }
  return true;
}

}  // namespace

bool is_zip(std::span<const std::byte> f) {
  return f.size() >= 4 && f[0] == std::byte{'P'} && f[1] == std::byte{'K'} &&
         f[2] == std::byte{3} && f[3] == std::byte{4};
}

bool is_legacy_torch(std::span<const std::byte> f) {
  return f.size() >= 2 && f[0] == std::byte{0x80} && static_cast<unsigned char>(f[1]) <= 5;
}

TorchBin parse_torch_bin(std::span<const std::byte> file, const std::string& name) {
  if (!is_zip(file)) {
    if (is_legacy_torch(file))
      fail(ErrorKind::Unsupported,
           name +
               ": legacy torch.save format (PyTorch < 1.6) is not supported: load it and save "
               "it again with a current PyTorch, or convert it to safetensors");
    fail(ErrorKind::Format, name + ": not a PyTorch zip checkpoint (no zip signature)");
  }
  const auto entries = read_zip(file, name);
  std::string root;
  for (const auto& [n, e] : entries) {
    const auto slash = n.find('/');
    if (slash != std::string::npos && n.substr(slash + 1) == "data.pkl") {
      if (!root.empty()) fail(ErrorKind::Format, name + ": several data.pkl in the archive");
      root = n.substr(0, slash + 1);
    }
  }
  if (root.empty()) fail(ErrorKind::Format, name + ": no data.pkl: not a torch.save archive");
  if (const auto it = entries.find(root + "byteorder"); it != entries.end()) {
    const std::string order(reinterpret_cast<const char*>(file.data() + it->second.offset),
                            it->second.size);
    if (order != "little")
      fail(ErrorKind::Unsupported,
           name + ": byteorder '" + printable(order, 16) + "' (little-endian only)");
  }
  const ZipEntry& pkl = entries.at(root + "data.pkl");
  const Ref top = Unpickler(file.subspan(pkl.offset, pkl.size), name + ": data.pkl").run();
  if (top->kind != Value::Kind::Dict)
    fail(ErrorKind::Format, name + ": the pickled object is not a state dict");

  struct Item {
    std::string name;
    const Value* tensor;
    std::uint64_t begin, nbytes;  // within the file, when contiguous
  };
  std::vector<Item> items;
  bool copy = false;
  std::map<std::string, bool> seen;
  for (std::size_t i = 0; i + 1 < top->items.size(); i += 2) {
    const Value& key = *top->items[i];
    const std::string shown = key.kind == Value::Kind::Str ? printable(key.s) : std::string();
    const Value& v = *top->items[i + 1];
    if (key.kind != Value::Kind::Str)
      fail(ErrorKind::Format, name + ": a state dict key is not a string");
    if (v.kind != Value::Kind::Tensor)
      fail(ErrorKind::Unsupported,
           located(name, shown, "state dict value is not a tensor (extra state?)"));
    if (!seen.emplace(key.s, true).second)
      fail(ErrorKind::Format, located(name, shown, "key appears twice"));
    const Value& storage = *v.items[0];
    const auto data = entries.find(root + "data/" + storage.s);
    if (data == entries.end())
      fail(ErrorKind::Format,
           located(name, shown, "storage '" + printable(storage.s) + "' is not in the zip"));
    const std::uint64_t es = dtype_size(storage.dtype);
    if (data->second.size / es < static_cast<std::uint64_t>(storage.i))
      fail(ErrorKind::Format, located(name, shown, "storage holds fewer bytes than its numel"));
    const auto reach = extent(v.size, v.stride);
    const auto offset = static_cast<std::uint64_t>(v.i);
    if (!reach || offset > static_cast<std::uint64_t>(storage.i) ||
        *reach > static_cast<std::uint64_t>(storage.i) - offset)
      fail(ErrorKind::Format, located(name, shown, "view reaches past its storage"));
    // Elements of the view; a stride-0 (expanded) view would grow on copy: no larger than its
    // storage (checked before each product, so nothing overflows).
    std::uint64_t n = 1;
    const bool empty = std::find(v.size.begin(), v.size.end(), 0) != v.size.end();
    for (auto d : v.size) {
      if (empty) break;
      if (static_cast<std::uint64_t>(d) > static_cast<std::uint64_t>(storage.i) / n)
        fail(ErrorKind::Format, located(name, shown, "view larger than its storage"));
      n *= static_cast<std::uint64_t>(d);
    }
    if (empty) n = 0;
    if (!contiguous(v.size, v.stride)) copy = true;
    items.push_back({key.s, &v, data->second.offset + offset * es, n * es});
  }

  TorchBin out;
  out.header.metadata = {{"format", "pt"}};
  out.header.has_metadata = true;
  if (!copy) {
    for (const auto& it : items)
      out.header.tensors.push_back(
          {it.name, it.tensor->items[0]->dtype, it.tensor->size, it.begin, it.begin + it.nbytes});
    out.header.data_size = file.size();
  } else {
    // Gather every tensor into one buffer: strided views become contiguous, element by element.
    std::uint64_t total = 0;
    for (const auto& it : items)
      total += it.nbytes;
    out.owned.resize(total);
    std::uint64_t at = 0;
    for (const auto& it : items) {
      const Value& v = *it.tensor;
      const std::uint64_t es = dtype_size(v.items[0]->dtype);
      const std::uint64_t base = entries.at(root + "data/" + v.items[0]->s).offset;
      const std::uint64_t n = it.nbytes / std::max<std::uint64_t>(es, 1);
      std::vector<std::int64_t> idx(v.size.size(), 0);
      for (std::uint64_t e = 0; e < n; ++e) {
        std::uint64_t src = static_cast<std::uint64_t>(v.i);
        for (std::size_t d = 0; d < idx.size(); ++d)
          src += static_cast<std::uint64_t>(idx[d] * v.stride[d]);
        std::memcpy(out.owned.data() + at + e * es, file.data() + base + src * es, es);
        for (std::size_t d = idx.size(); d-- > 0;) {
          if (++idx[d] < v.size[d]) break;
          idx[d] = 0;
        }
      }
      out.header.tensors.push_back({it.name, v.items[0]->dtype, v.size, at, at + it.nbytes});
      at += it.nbytes;
    }
    out.header.data_size = total;
  }
  std::stable_sort(out.header.tensors.begin(), out.header.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin; });
  return out;
}

}  // namespace ckpt
