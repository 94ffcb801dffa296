// base/format: the one line formatter of magslab. Fatal messages
// (platform::fatal, platform::misuse) and the stats report (api/report.cc)
// build their lines here: a fixed buffer on the caller's stack, no allocation
// (the heap may be what is broken, or the caller may be malloc itself), no
// system call. Text past the buffer is cut; a line always has room for its
// final newline.
#pragma once

#include <cstddef>
#include <cstdint>

namespace magslab {

class LineBuf {
 public:
  static constexpr size_t kCapacity = 256;

  LineBuf& str(const char* s) {
    while (*s != '\0' && n_ + 1 < kCapacity) buf_[n_++] = *s++;
    return *this;
  }
  // The n bytes at s (a NUL among them ends the text early).
  LineBuf& str(const char* s, size_t n) {
    for (size_t i = 0; i < n && s[i] != '\0' && n_ + 1 < kCapacity; ++i) buf_[n_++] = s[i];
    return *this;
  }
  LineBuf& num(uint64_t v) {
    char tmp[24];
    int k = 0;
    do {
      tmp[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (k > 0 && n_ + 1 < kCapacity) buf_[n_++] = tmp[--k];
    return *this;
  }
  // "0x" and lowercase hex digits.
  LineBuf& hex(uint64_t v) {
    str("0x");
    char tmp[16];
    int k = 0;
    do {
      tmp[k++] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v != 0);
    while (k > 0 && n_ + 1 < kCapacity) buf_[n_++] = tmp[--k];
    return *this;
  }
  // Bytes as "123456 B (120.5 KiB)" (the part in parentheses from 1 KiB up).
  LineBuf& bytes(uint64_t v) {
    num(v).str(" B");
    static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
    if (v >= 1024) {
      uint64_t whole = v, frac = 0;
      int u = -1;
      while (whole >= 1024 && u < 3) {
        frac = (whole % 1024) * 10 / 1024;
        whole /= 1024;
        ++u;
      }
      str(" (").num(whole).str(".").num(frac).str(" ").str(kUnits[u]).str(")");
    }
    return *this;
  }
  // Ends the line; data()/size() then include the newline.
  LineBuf& end() {
    buf_[n_++] = '\n';
    return *this;
  }
  const char* data() const { return buf_; }
  size_t size() const { return n_; }
  void clear() { n_ = 0; }

 private:
  char buf_[kCapacity];
  size_t n_ = 0;
};

}  // namespace magslab
