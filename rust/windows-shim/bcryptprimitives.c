/* Wine 8 has no bcryptprimitives.dll, whose ProcessPrng is how Rust's standard library
 * asks Windows for random bytes. This stand-in, copied into the test prefix's system32 by
 * `python build.py test --windows`, answers from RtlGenRandom (advapi32) instead.
 * Only for running the test binaries under Wine; never shipped. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    for (; len > 0x10000000; data += 0x10000000, len -= 0x10000000)
        if (!RtlGenRandom(data, 0x10000000)) return FALSE;
    return RtlGenRandom(data, (ULONG)len);
}
