#ifndef KILN_CLIBGIT2_SHIM_H
#define KILN_CLIBGIT2_SHIM_H
#include <git2.h>
#endif
