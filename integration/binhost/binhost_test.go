package binhost

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const header = "CHOST: x86_64-pc-linux-gnu\nPACKAGES: 2\nTIMESTAMP: 1000\nVERSION: 0\n\n"

func pkgNames(ix *Index) []string {
	var out []string
	for _, p := range ix.Packages {
		out = append(out, p.CPV())
	}
	return out
}

func TestBinhostParseFirstCharacterAfterColonDropped(t *testing.T) {
	ix := ParseIndex([]byte(header +
		"CPV:dev-libs/zed-1\nSLOT:  1\nUSE:\n\n" +
		"CPV:\u00e4app-misc/b-1\n\n"))
	if got := pkgNames(ix); len(got) != 2 || got[0] != "ev-libs/zed-1" || got[1] != "app-misc/b-1" {
		t.Fatalf("CPV without a space after the colon: want [ev-libs/zed-1 app-misc/b-1] (first character, a code point, dropped), got %q", got)
	}
	if v := ix.Packages[0].Get("SLOT"); v != " 1" {
		t.Errorf("SLOT:  1 (two spaces): want value %q, got %q", " 1", v)
	}
	if v, ok := ix.Packages[0].Meta["USE"]; !ok || v != "" {
		t.Errorf("USE: with empty value: want present and empty, got %q present=%v", v, ok)
	}
}

func TestBinhostParseLinesWithoutColonIgnored(t *testing.T) {
	ix := ParseIndex([]byte(header + "garbage line\nCPV: a/b-1\nmore garbage\nSLOT: 2\n\n"))
	if len(ix.Packages) != 1 || ix.Packages[0].Get("SLOT") != "2" {
		t.Fatalf("want one package a/b-1 with SLOT 2, got %q %v", pkgNames(ix), ix.Packages)
	}
}

func TestBinhostParseCRLFIsOneHeaderBlock(t *testing.T) {
	crlf := strings.ReplaceAll(header+"CPV: a/b-1\nSIZE: 3\n\n", "\n", "\r\n")
	ix := ParseIndex([]byte(crlf))
	if len(ix.Packages) != 0 {
		t.Errorf("CRLF index: want zero packages (\\r\\n lines are not empty), got %q", pkgNames(ix))
	}
	if v := ix.Header["CPV"]; v != "a/b-1\r" {
		t.Errorf("CRLF index: the package lines belong to the header; want header CPV %q, got %q", "a/b-1\r", v)
	}
	if v := ix.Header["VERSION"]; v != "0\r" {
		t.Errorf("CRLF index: want VERSION %q (CR kept), got %q", "0\r", v)
	}
	if err := ix.CheckVersion(); err != nil {
		t.Errorf("VERSION %q: Python's int() accepts it, want supported, got %v", "0\r", err)
	}
}

func TestBinhostParseTwoBlankLinesEndBody(t *testing.T) {
	ix := ParseIndex([]byte(header + "CPV: a/one-1\n\n\nCPV: a/two-1\n\n"))
	if got := pkgNames(ix); len(got) != 1 || got[0] != "a/one-1" {
		t.Fatalf("two blank lines must end the body: want [a/one-1], got %q", got)
	}
}

func TestBinhostParseEOFWithoutBlankLine(t *testing.T) {
	ix := ParseIndex([]byte(header + "CPV: a/one-1\nSLOT: 1\n\nCPV: a/two-1\nSLOT: 2"))
	if got := pkgNames(ix); len(got) != 2 {
		t.Fatalf("last block ended by EOF: want 2 packages, got %q", got)
	}
}

func TestBinhostParseLeadingBlankLineLosesHeader(t *testing.T) {
	ix := ParseIndex([]byte("\n" + header + "CPV: a/b-1\n\n"))
	if len(ix.Header) != 0 {
		t.Errorf("leading blank line: want an empty header, got %v", ix.Header)
	}
	if err := ix.CheckVersion(); err == nil {
		t.Errorf("leading blank line: want the index rejected (no VERSION), got nil error")
	}
}

func TestBinhostParseUnknownKeysDroppedAndTranslated(t *testing.T) {
	ix := ParseIndex([]byte("REPO: hdrrepo\nVERSION: 0\nTIMESTAMP: 5\nFOO: bar\n\n" +
		"CPV: a/b-1\nSHA256: 00\nREPO_REVISIONS: {}\nDESC: a thing\nMTIME: 42\nREPO: gentoo\nFOO: x\n\n"))
	if ix.Header["repository"] != "hdrrepo" || ix.Header["FOO"] != "bar" {
		t.Errorf("header: want every key kept, REPO read as repository; got %v", ix.Header)
	}
	p := ix.Packages[0]
	for _, k := range []string{"SHA256", "REPO_REVISIONS", "FOO", "DESC", "MTIME", "REPO"} {
		if p.Has(k) {
			t.Errorf("package key %s: want dropped or translated, still present (%q)", k, p.Get(k))
		}
	}
	want := map[string]string{"DESCRIPTION": "a thing", "_mtime_": "42", "repository": "gentoo"}
	for k, v := range want {
		if p.Get(k) != v {
			t.Errorf("package key %s: want %q, got %q", k, v, p.Get(k))
		}
	}
}

func TestBinhostParseBlockOfOnlyDroppedKeysEndsBody(t *testing.T) {
	// _readpkgindex returns an empty dict for it, and readBody stops there.
	ix := ParseIndex([]byte(header + "CPV: a/one-1\n\nFOO: 1\nBAR: 2\n\nCPV: a/two-1\n\n"))
	if got := pkgNames(ix); len(got) != 1 {
		t.Fatalf("a block of only unknown keys is an empty block: want [a/one-1], got %q", got)
	}
}

func TestBinhostParseBlockWithoutCPVSkipped(t *testing.T) {
	ix := ParseIndex([]byte(header + "CPV: a/one-1\n\nSLOT: 3\nPATH: x\n\nCPV: a/two-1\n\n"))
	if got := pkgNames(ix); len(got) != 2 || got[1] != "a/two-1" {
		t.Fatalf("CPV-less block: want skipped, reading on: [a/one-1 a/two-1], got %q", got)
	}
}

func TestBinhostParseDefaultsAndInheritance(t *testing.T) {
	ix := ParseIndex([]byte("CHOST: hdr-chost\nREPO: hdrrepo\nVERSION: 0\nTIMESTAMP: 1\n\n" +
		"CPV: a/one-1\n\n" +
		"CPV: a/two-1\nCHOST: own\nREPO: own-repo\nSLOT: 2\nEAPI: 8\n\n"))
	one, two := ix.Packages[0], ix.Packages[1]
	for k, v := range map[string]string{"CHOST": "hdr-chost", "repository": "hdrrepo", "SLOT": "0", "EAPI": "0", "BUILD_ID": "", "PATH": ""} {
		if got, ok := one.Meta[k]; !ok || got != v {
			t.Errorf("a/one-1 %s: want %q (default or inherited), got %q present=%v", k, v, got, ok)
		}
	}
	for k, v := range map[string]string{"CHOST": "own", "repository": "own-repo", "SLOT": "2", "EAPI": "8"} {
		if got := two.Get(k); got != v {
			t.Errorf("a/two-1 %s: want its own %q, got %q", k, v, got)
		}
	}
	// An empty header value is not inherited.
	ix = ParseIndex([]byte("CHOST:\nREPO: \nVERSION: 0\n\nCPV: a/b-1\n\n"))
	for _, k := range []string{"CHOST", "repository"} {
		if ix.Packages[0].Has(k) {
			t.Errorf("empty header %s: want not inherited, package has %q", k, ix.Packages[0].Get(k))
		}
	}
}

func TestBinhostCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{"0": true, "-1": true, " 0": true, "1": false, "x": false} {
		ix := ParseIndex([]byte("VERSION:" + " " + v + "\n\n"))
		if err := ix.CheckVersion(); (err == nil) != ok {
			t.Errorf("VERSION %q: want supported=%v, got error %v", v, ok, err)
		}
	}
}

func TestBinhostChoose(t *testing.T) {
	ix := ParseIndex([]byte(header +
		"BUILD_ID: 1\nBUILD_TIME: 200\nCPV: a/b-1\n\n" +
		"BUILD_ID: 3\nBUILD_TIME: 100\nCPV: a/b-1\n\n" +
		"BUILD_ID: 2\nBUILD_TIME: 200\nCPV: a/b-1\n\n" +
		"BUILD_ID: 9\nCPV: a/c-1\n\n" +
		"BUILD_ID: 1\nBUILD_TIME: 1\nCPV: a/c-1\n\n"))
	ch := Choose(ix)
	if p := ch["a/b-1"]; p.BuildID() != 2 {
		t.Errorf("a/b-1: want BUILD_ID 2 (highest BUILD_TIME 200, tie broken by BUILD_ID), got %s", p)
	}
	if p := ch["a/c-1"]; p.BuildID() != 1 {
		t.Errorf("a/c-1: want BUILD_ID 1 (missing BUILD_TIME counts as 0), got %s", p)
	}
}

// ---------------------------------------------------------------- HTTP

type fakeHost struct {
	mu       sync.Mutex
	requests []*http.Request
	handler  func(w http.ResponseWriter, r *http.Request)
}

func newFakeHost(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *fakeHost) {
	f := &fakeHost{handler: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Clone(context.Background()))
		f.mu.Unlock()
		f.handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, f
}

func (f *fakeHost) paths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, r.URL.Path)
	}
	return out
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestBinhostFetch404FallsBackToPackages(t *testing.T) {
	idx := header + "CPV: a/b-1\nPATH: a/b/b-1-1.xpak\n\n"
	srv, f := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sub/Packages" {
			w.Write([]byte(idx))
			return
		}
		http.NotFound(w, r)
	})
	c := NewClient(true)
	ix, fromCache, err := c.Fetch(context.Background(), srv.URL+"/sub/", nil)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if fromCache || ix.URL != srv.URL+"/sub/Packages" || len(ix.Packages) != 1 {
		t.Fatalf("want a fresh index from /sub/Packages with 1 package, got fromCache=%v url=%s packages=%q", fromCache, ix.URL, pkgNames(ix))
	}
	if got := f.paths(); strings.Join(got, " ") != "/sub/Packages.gz /sub/Packages" {
		t.Errorf("requests: want [/sub/Packages.gz /sub/Packages], got %q", got)
	}
	if ua := f.requests[0].Header.Get("User-Agent"); ua != "Gentoo Portage" {
		t.Errorf("User-Agent: want %q, got %q", "Gentoo Portage", ua)
	}
	if ims := f.requests[0].Header.Get("If-Modified-Since"); ims != "" {
		t.Errorf("no cached copy: want no If-Modified-Since, got %q", ims)
	}
	if u := ix.Packages[0].URL(); u != srv.URL+"/sub/a/b/b-1-1.xpak" {
		t.Errorf("package URL: want base + PATH = %s, got %s", srv.URL+"/sub/a/b/b-1-1.xpak", u)
	}
}

func TestBinhostFetchGzPreferred(t *testing.T) {
	plain := []byte(header + "CPV: a/b-1\n\n")
	srv, f := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/Packages.gz":
			w.Write(gz(plain))
		case "/Packages":
			w.Write([]byte(header + "CPV: WRONG/x-1\n\n"))
		}
	})
	ix, _, err := NewClient(true).Fetch(context.Background(), srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ix.Raw, plain) || len(f.paths()) != 1 {
		t.Fatalf("want Packages.gz only, decompressed; got requests %q raw %q", f.paths(), ix.Raw)
	}
}

func TestBinhostFetchErrorStatusAborts(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusInternalServerError} {
		srv, f := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/Packages.gz" {
				w.WriteHeader(status)
				return
			}
			w.Write([]byte(header))
		})
		_, _, err := NewClient(true).Fetch(context.Background(), srv.URL, nil)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != status || !strings.Contains(err.Error(), srv.URL+"/Packages.gz") || !strings.Contains(err.Error(), fmt.Sprint(status)) {
			t.Errorf("status %d on Packages.gz: want an error naming the URL and the status, got %v", status, err)
		}
		if got := f.paths(); len(got) != 1 {
			t.Errorf("status %d on Packages.gz: want no fallback to Packages, requests %q", status, got)
		}
	}
}

func TestBinhostFetchIfModifiedSinceAnd304(t *testing.T) {
	var lastIMS string
	srv, _ := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		lastIMS = r.Header.Get("If-Modified-Since")
		if lastIMS != "" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(gz([]byte(header + "CPV: a/b-1\n\n")))
	})
	c := NewClient(true)
	cache := &Cache{}
	ix1, fromCache, err := c.Fetch(context.Background(), srv.URL, cache)
	if err != nil || fromCache || cache.Index != ix1 {
		t.Fatalf("first fetch: want a fresh index stored in the cache, got fromCache=%v err=%v", fromCache, err)
	}
	ix2, fromCache, err := c.Fetch(context.Background(), srv.URL, cache)
	if err != nil || !fromCache || ix2 != ix1 {
		t.Fatalf("second fetch (304): want the cached index, got fromCache=%v err=%v", fromCache, err)
	}
	// TIMESTAMP 1000 + 5 s.
	if want := "Thu, 01 Jan 1970 00:16:45 GMT"; lastIMS != want {
		t.Errorf("If-Modified-Since: want %q (TIMESTAMP 1000 + 5 s, RFC 1123 GMT), got %q", want, lastIMS)
	}
	ex := c.Exchanges()
	if len(ex) != 2 || ex[1].Status != 304 {
		t.Errorf("exchanges: want 200 then 304, got %+v", ex)
	}
}

func TestBinhostFetchLastModifiedPreferred(t *testing.T) {
	// Cached TIMESTAMP 1000. The server's file says TIMESTAMP 900 but its
	// Last-Modified is 2000: Portage takes Last-Modified and reads the body.
	lm := time.Unix(2000, 0).UTC().Format(http.TimeFormat)
	body := "TIMESTAMP: 900\nVERSION: 0\n\nCPV: a/new-1\n\n"
	srv, _ := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/Packages.gz" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", lm)
		w.Write([]byte(body))
	})
	cache := &Cache{Index: ParseIndex([]byte(header + "CPV: a/old-1\n\n"))}
	ix, fromCache, err := NewClient(true).Fetch(context.Background(), srv.URL, cache)
	if err != nil || fromCache || ix.RemoteTimestamp != 2000 || ix.Packages[0].CPV() != "a/new-1" {
		t.Fatalf("want the new index (remote timestamp 2000 from Last-Modified), got err=%v fromCache=%v ts=%v", err, fromCache, ix)
	}
	// The other way round: TIMESTAMP 2000 in the file, Last-Modified 900:
	// not newer than the cache, so the cached copy is kept.
	lm = time.Unix(900, 0).UTC().Format(http.TimeFormat)
	body = "TIMESTAMP: 2000\nVERSION: 0\n\nCPV: a/new-1\n\n"
	old := ParseIndex([]byte(header + "CPV: a/old-1\n\n"))
	cache = &Cache{Index: old}
	ix, fromCache, err = NewClient(true).Fetch(context.Background(), srv.URL, cache)
	if err != nil || !fromCache || ix != old {
		t.Fatalf("Last-Modified 900 < cached 1000: want the cached copy kept, got err=%v fromCache=%v", err, fromCache)
	}
}

func TestBinhostFetchRejects(t *testing.T) {
	cases := map[string]string{
		"no TIMESTAMP":       "VERSION: 0\n\nCPV: a/b-1\n\n",
		"no VERSION":         "TIMESTAMP: 1\n\nCPV: a/b-1\n\n",
		"VERSION 1":          "TIMESTAMP: 1\nVERSION: 1\n\nCPV: a/b-1\n\n",
		"leading blank line": "\nTIMESTAMP: 1\nVERSION: 0\n\nCPV: a/b-1\n\n",
	}
	for name, body := range cases {
		srv, _ := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) { w.Write(gz([]byte(body))) })
		_, _, err := NewClient(false).Fetch(context.Background(), srv.URL, nil)
		want := "VERSION"
		if name == "no TIMESTAMP" || name == "leading blank line" { // checked before VERSION, as Portage does
			want = "TIMESTAMP"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want the index rejected with an error naming %s, got %v", name, want, err)
		}
	}
}

func TestBinhostFetchDecodesContentEncoding(t *testing.T) {
	plain := []byte(header + "CPV: a/b-1\n\n")
	srv, _ := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/Packages.gz" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz(plain))
	})
	c := NewClient(true)
	ix, _, err := c.Fetch(context.Background(), srv.URL, nil)
	if err != nil || !bytes.Equal(ix.Raw, plain) {
		t.Fatalf("Content-Encoding gzip: want it decoded, got err=%v index=%+v", err, ix)
	}
}

func digests(b []byte) (string, string) {
	m := md5.Sum(b)
	s := sha1.Sum(b)
	return hex.EncodeToString(m[:]), hex.EncodeToString(s[:])
}

func TestBinhostDownloadAndVerify(t *testing.T) {
	data := []byte("0123456789 package bytes")
	m, s := digests(data)
	idx := fmt.Sprintf("URI: %%s/mirror/\nTIMESTAMP: 1\nVERSION: 0\n\n"+
		"BUILD_ID: 1\nCPV: a/good-1\nMD5: %s\nPATH: /a/good/good-1-1.xpak\nSHA1: %s\nSIZE: %d\n\n"+
		"BUILD_ID: 2\nCPV: a/badsha-1\nMD5: %s\nPATH: a/x.xpak\nSHA1: %s\nSIZE: %d\n\n"+
		"BUILD_ID: 3\nCPV: a/badsize-1\nMD5: %s\nPATH: a/x.xpak\nSHA1: %s\nSIZE: %d\n\n"+
		"BUILD_ID: 4\nCPV: a/nosize-1\nPATH: a/x.xpak\nSHA1: 00\n\n"+
		"BUILD_ID: 5\nCPV: a/nopath-1\nSIZE: 1\n\n",
		m, s, len(data), m, strings.Repeat("0", 40), len(data), m, s, len(data)+1)
	var srvURL string
	srv, f := newFakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/Packages":
			fmt.Fprintf(w, idx, srvURL)
		case "/mirror/a/good/good-1-1.xpak", "/mirror/a/x.xpak":
			w.Write(data)
		default:
			http.NotFound(w, r)
		}
	})
	srvURL = srv.URL
	c := NewClient(true)
	cache := &Cache{}
	ix, _, err := c.Fetch(context.Background(), srv.URL, cache)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]error{}
	for _, p := range ix.Packages {
		_, got[p.CPV()] = c.Download(context.Background(), p)
	}
	if got["a/good-1"] != nil {
		t.Errorf("a/good-1: want verified, got %v", got["a/good-1"])
	}
	for cpv, want := range map[string]string{"a/badsha-1": "SHA1 check failed", "a/badsize-1": "SIZE check failed", "a/nosize-1": "no SIZE", "a/nopath-1": "PATH"} {
		if err := got[cpv]; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), cpv) {
			t.Errorf("%s: want an error naming it and %q, got %v", cpv, want, err)
		}
	}
	if !strings.Contains(strings.Join(f.paths(), " "), "/mirror/a/good/good-1-1.xpak") {
		t.Errorf("want the package fetched from URI + PATH (leading / of PATH stripped), requests %q", f.paths())
	}
	// Portage (non-strict) verifies nothing without SIZE.
	lax := NewClient(false)
	if err := lax.Verify(ix.Packages[3], data); err != nil {
		t.Errorf("non-strict, no SIZE: want verification skipped, got %v", err)
	}
	// Sync downloads only what the cache lacks.
	downloaded, _ := c.Sync(context.Background(), cache, ix.Packages[:1])
	again, err := c.Sync(context.Background(), cache, ix.Packages[:1])
	if len(downloaded) != 1 || len(again) != 0 || err != nil {
		t.Errorf("Sync: want 1 download then 0, got %d then %d (err %v)", len(downloaded), len(again), err)
	}
}
