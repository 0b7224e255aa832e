# libdirectline: build, install and test.
#
#   make                              build .build/release/libdirectline.so (+ SONAME link)
#   make install PREFIX=/usr/local    install the library, header and pkg-config file
#   make uninstall PREFIX=/usr/local
#   make dist                         dist/libdirectline-VERSION-linux-x86_64.tar.gz: the stripped
#                                     library, header, relocatable .pc, examples (DIST_DIR=...)
#   make check                        the fast tier, for every change: build, header, lint,
#                                     Swift tests, pytest without the slow suites (minutes)
#   make lint                         swift format and ruff (part of make check)
#   make test / make demo             the two README commands (make test: the full run CI does)
#
# DESTDIR is honoured for staged installs (packaging).

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=
DIST_DIR   ?= dist

# The version lives in one place, Sources/DirectLine/Support/LibraryVersion.swift.
version_part = $(shell sed -n 's/^ *static let $(1) = \([0-9][0-9]*\)$$/\1/p' Sources/DirectLine/Support/LibraryVersion.swift)
MAJOR   := $(call version_part,major)
MINOR   := $(call version_part,minor)
PATCH   := $(call version_part,patch)
VERSION := $(MAJOR).$(MINOR).$(PATCH)

BUILT  := .build/release/libdirectline.so
SONAME := libdirectline.so.$(MAJOR)
REAL   := libdirectline.so.$(VERSION)

.PHONY: all library install uninstall dist check lint test demo clean

all: library

# SwiftPM names the file libdirectline.so; its SONAME is libdirectline.so.MAJOR,
# so programs linked against it look for that name: link it next to the file.
# Package.swift reads MAJOR from LibraryVersion.swift, but SwiftPM's manifest
# cache is keyed on Package.swift's own text and would keep a stale SONAME
# after a version bump: evaluate the manifest afresh (under a second).
library:
	swift build -c release -Xswiftc -static-stdlib --manifest-cache none
	ln -sf libdirectline.so .build/release/$(SONAME)

install: library
	install -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	install -m 755 $(BUILT) "$(DESTDIR)$(LIBDIR)/$(REAL)"
	ln -sf $(REAL) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(LIBDIR)/libdirectline.so"
	install -m 644 include/directline.h "$(DESTDIR)$(INCLUDEDIR)/directline.h"
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    packaging/directline.pc.in > "$(DESTDIR)$(PKGCONFIGDIR)/directline.pc"
	chmod 644 "$(DESTDIR)$(PKGCONFIGDIR)/directline.pc"

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/$(REAL)" "$(DESTDIR)$(LIBDIR)/$(SONAME)" "$(DESTDIR)$(LIBDIR)/libdirectline.so" \
	      "$(DESTDIR)$(INCLUDEDIR)/directline.h" "$(DESTDIR)$(PKGCONFIGDIR)/directline.pc"

# The release tarball. scripts/dist.sh lays the files out with this
# Makefile's own install target (run with -o library, so the build is not
# started again), then strips the copy and makes its .pc relocatable.
dist: library
	VERSION=$(VERSION) scripts/dist.sh "$(DIST_DIR)"

check:
	scripts/check.sh

# swift-format's whitespace findings cannot be turned off by configuration
# (swiftlang/swift-format#764), and its pretty printer never aligns
# continuation lines under the opening bracket as this code does: only its
# rules run (--debug-disable-pretty-print, a hidden swift-format flag). ruff writes no cache, which would litter the work tree; it takes
# a tenth of a second without one. Both always run, so one pass shows all.
lint:
	status=0; \
	swift format lint --strict --recursive --debug-disable-pretty-print Package.swift Sources Tests/DirectLineTests || status=1; \
	python3 -m ruff check --no-cache || status=1; \
	exit $$status

test:
	scripts/test.sh

demo:
	scripts/demo.sh

# The Python package for PyPI: a manylinux_2_36 wheel with libcurl inside
# (scripts/wheel.sh), and an sdist that builds the library with Swift
# (scripts/sdist.sh). Both write to dist/.
.PHONY: wheel sdist

wheel:
	scripts/wheel.sh

sdist:
	scripts/sdist.sh

clean:
	rm -rf .build dist bindings/python/build bindings/python/directline.egg-info
