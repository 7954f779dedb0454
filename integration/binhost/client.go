package binhost

import (
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UserAgent is what Portage's urllib client sends (util/_urlopen.py).
const UserAgent = "Gentoo Portage"

// Exchange is one HTTP request the client made and what came back.
type Exchange struct {
	Method, URL    string
	Status         int // 0 when the request failed before a response
	RequestHeader  http.Header
	ResponseHeader http.Header
	BodyBytes      int64 // bytes read from the body (before any decoding)
	Err            error
}

// Cache is the client's local state for one binhost: the cached copy of the
// remote index (Portage: /var/cache/edb/binhost/HOST/PATH/Packages, written
// with DOWNLOAD_TIMESTAMP added and TIMESTAMP unchanged) and the packages
// already fetched into PKGDIR, by instance key (a local instance with the
// same key overrides the remote one, so it is not downloaded again).
type Cache struct {
	Index             *Index
	DownloadTimestamp int64
	Local             map[InstanceKey]*LocalPackage
}

// LocalPackage is a downloaded, verified package.
type LocalPackage struct {
	URL  string
	Data []byte
}

// Client fetches indexes and packages from one or more binhosts.
type Client struct {
	HTTP *http.Client
	// Strict makes missing PATH, SIZE, MD5 or SHA1 an error. Portage skips
	// ALL verification when SIZE is missing (BinpkgVerifier) and fails only
	// on a missing PATH; a pkgdirfs binhost must always send all four.
	Strict bool
	// Now is the clock for DOWNLOAD_TIMESTAMP (time.Now when nil).
	Now func() time.Time

	mu        sync.Mutex
	exchanges []Exchange
}

// NewClient returns a client with Portage's 10 s timeout.
func NewClient(strict bool) *Client {
	return &Client{HTTP: &http.Client{Timeout: 10 * time.Second}, Strict: strict}
}

// Exchanges returns the requests made since the last ResetExchanges.
func (c *Client) Exchanges() []Exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Exchange(nil), c.exchanges...)
}

// ResetExchanges forgets the recorded requests.
func (c *Client) ResetExchanges() {
	c.mu.Lock()
	c.exchanges = nil
	c.mu.Unlock()
}

func (c *Client) record(e Exchange) {
	c.mu.Lock()
	c.exchanges = append(c.exchanges, e)
	c.mu.Unlock()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// NotFoundError is an HTTP 404: the only status after which Portage tries
// Packages when Packages.gz failed.
type NotFoundError struct{ URL string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s: HTTP 404 Not Found", e.URL) }

// StatusError is any other unexpected HTTP status.
type StatusError struct {
	URL    string
	Status int
	Text   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("error fetching binhost package info from %s: HTTP status %d %s", e.URL, e.Status, e.Text)
}

// Fetch is binarytree._populate_remote_repo for one binhost over HTTP:
// <base>/Packages.gz first, <base>/Packages only after a 404 for it; any
// other failure aborts. With a cached copy holding TIMESTAMP it sends
// If-Modified-Since: TIMESTAMP+5 s; a 304, or a remote timestamp not newer
// than the cached one, keeps the cached copy (fromCache true). A new copy
// replaces cache.Index (cache may be nil: no cache).
func (c *Client) Fetch(ctx context.Context, baseURL string, cache *Cache) (*Index, bool, error) {
	base := strings.TrimRight(baseURL, "/")
	ix, fromCache, err := c.FetchFile(ctx, base, "Packages.gz", cache)
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return c.FetchFile(ctx, base, "Packages", cache)
	}
	return ix, fromCache, err
}

// IfModifiedSince is the header value Portage sends for a cached TIMESTAMP
// (util/_urlopen.py _timestamp_to_http: TIMESTAMP + 5 s, RFC 1123, GMT).
func IfModifiedSince(timestamp int64) string {
	return time.Unix(timestamp+5, 0).UTC().Format(http.TimeFormat)
}

// FetchFile fetches one index file (name "Packages.gz" or "Packages") with
// the rules of Fetch, without the fallback.
func (c *Client) FetchFile(ctx context.Context, baseURL, name string, cache *Cache) (*Index, bool, error) {
	base := strings.TrimRight(baseURL, "/")
	url := base + "/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("User-Agent", UserAgent)
	// Set explicitly, so net/http does not decode transparently: we decode
	// as Portage's CompressedResponseProcessor does, and a server that
	// re-encodes Packages.gz shows up as Content-Encoding in Exchanges.
	req.Header.Set("Accept-Encoding", "bzip2,gzip,deflate")
	var localTS int64
	haveLocal := false
	if cache != nil && cache.Index != nil {
		if v := cache.Index.Header["TIMESTAMP"]; v != "" {
			n, err := pyInt(v)
			if err != nil {
				return nil, false, fmt.Errorf("cached index of %s: TIMESTAMP %q is not an integer", base, v)
			}
			localTS, haveLocal = n, true
			req.Header.Set("If-Modified-Since", IfModifiedSince(localTS))
		}
	}
	ex := Exchange{Method: req.Method, URL: url, RequestHeader: req.Header.Clone()}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		ex.Err = err
		c.record(ex)
		return nil, false, fmt.Errorf("error fetching binhost package info from %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	ex.Status, ex.ResponseHeader, ex.BodyBytes, ex.Err = resp.StatusCode, resp.Header.Clone(), int64(len(raw)), err
	c.record(ex)
	if err != nil {
		return nil, false, fmt.Errorf("error fetching binhost package info from %s: reading body: %w", url, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		if !haveLocal {
			return nil, false, fmt.Errorf("%s: HTTP 304 Not Modified to a request without If-Modified-Since", url)
		}
		return cache.Index, true, nil
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, &NotFoundError{URL: url}
	case resp.StatusCode != http.StatusOK:
		return nil, false, &StatusError{URL: url, Status: resp.StatusCode, Text: http.StatusText(resp.StatusCode)}
	}
	body, err := decodeContent(resp.Header.Get("Content-Encoding"), raw)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", url, err)
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, false, fmt.Errorf("%s: not gzip: %w", url, err)
		}
		body, err = io.ReadAll(zr)
		if err != nil {
			return nil, false, fmt.Errorf("%s: gunzip: %w", url, err)
		}
	}
	ix := ParseIndex(body)
	ix.URL, ix.BaseURL = url, base
	ix.LastModified, ix.ETag = resp.Header.Get("Last-Modified"), resp.Header.Get("ETag")
	// Last-Modified is preferred over the in-file TIMESTAMP.
	if lm := ix.LastModified; lm != "" {
		t, err := http.ParseTime(lm)
		if err != nil {
			return nil, false, fmt.Errorf("%s: unparsable Last-Modified %q: %v", url, lm, err)
		}
		ix.RemoteTimestamp = t.Unix()
	} else if v := ix.Header["TIMESTAMP"]; v != "" {
		n, err := pyInt(v)
		if err != nil {
			return nil, false, fmt.Errorf("%s: TIMESTAMP %q is not an integer", url, v)
		}
		ix.RemoteTimestamp = n
	} else {
		return nil, false, fmt.Errorf("binhost package index %s has no TIMESTAMP field (and no Last-Modified)", url)
	}
	if err := ix.CheckVersion(); err != nil {
		return nil, false, err
	}
	if haveLocal && localTS >= ix.RemoteTimestamp {
		// Portage reads the body only when the cached TIMESTAMP is older.
		return cache.Index, true, nil
	}
	if _, ok := ix.Header["TIMESTAMP"]; !ok {
		// Portage would accept it (TIMESTAMP from Last-Modified), but a
		// cached copy without TIMESTAMP never sends If-Modified-Since.
		if c.Strict {
			return nil, false, fmt.Errorf("%s: no TIMESTAMP line in the header", url)
		}
	}
	baseURI := base
	if v, ok := ix.Header["URI"]; ok {
		baseURI = v
	}
	for _, p := range ix.Packages {
		p.Meta["BASE_URI"] = baseURI
		p.Meta["PKGINDEX_URI"] = url
		delete(p.Meta, "FETCHCOMMAND") // only binrepos.conf may set these
		delete(p.Meta, "RESUMECOMMAND")
	}
	if cache != nil {
		cache.Index = ix
		cache.DownloadTimestamp = c.now().Unix()
	}
	return ix, false, nil
}

func decodeContent(enc string, b []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "identity":
		return b, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding %s: %w", enc, err)
		}
		return io.ReadAll(zr)
	case "deflate":
		return io.ReadAll(flate.NewReader(bytes.NewReader(b)))
	case "bzip2":
		return io.ReadAll(bzip2.NewReader(bytes.NewReader(b)))
	}
	return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
}

// URL is the package's download URL:
// BASE_URI.rstrip("/") + "/" + PATH.lstrip("/").
func (p *Package) URL() string {
	return strings.TrimRight(p.Meta["BASE_URI"], "/") + "/" + strings.TrimLeft(p.Meta["PATH"], "/")
}

// Download fetches a package (plain GET: no conditional request, no Range)
// and verifies it.
func (c *Client) Download(ctx context.Context, p *Package) ([]byte, error) {
	if p.Meta["PATH"] == "" {
		return nil, fmt.Errorf("%s: PATH not found in the binpkg index", p)
	}
	if c.Strict {
		if err := c.strictKeys(p); err != nil {
			return nil, err
		}
	}
	url := p.URL()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", UserAgent)
	ex := Exchange{Method: req.Method, URL: url, RequestHeader: req.Header.Clone()}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		ex.Err = err
		c.record(ex)
		return nil, fmt.Errorf("%s: GET %s: %w", p, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	ex.Status, ex.ResponseHeader, ex.BodyBytes, ex.Err = resp.StatusCode, resp.Header.Clone(), int64(len(data)), err
	c.record(ex)
	if err != nil {
		return nil, fmt.Errorf("%s: GET %s: reading body after %d bytes: %w", p, url, len(data), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET %s: HTTP status %d %s", p, url, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if err := c.Verify(p, data); err != nil {
		return nil, fmt.Errorf("%w (downloaded from %s)", err, url)
	}
	return data, nil
}

func (c *Client) strictKeys(p *Package) error {
	for _, k := range []string{"PATH", "SIZE", "MD5", "SHA1"} {
		if p.Meta[k] == "" {
			return fmt.Errorf("%s: strict: no %s in the index entry (a remote client cannot fetch or verify it)", p, k)
		}
	}
	return nil
}

// Verify is BinpkgVerifier: SIZE against the byte count, then every digest
// present (MD5, SHA1). Without SIZE Portage verifies nothing; in strict mode
// that is an error.
func (c *Client) Verify(p *Package, data []byte) error {
	if c.Strict {
		if err := c.strictKeys(p); err != nil {
			return err
		}
	}
	size, ok := p.Meta["SIZE"]
	if !ok || size == "" {
		return nil
	}
	if got := strconv.Itoa(len(data)); got != size {
		return fmt.Errorf("%s: SIZE check failed: index says %s, got %s bytes", p, size, got)
	}
	if want := p.Meta["MD5"]; want != "" {
		sum := md5.Sum(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("%s: MD5 check failed: index says %s, got %s", p, want, got)
		}
	}
	if want := p.Meta["SHA1"]; want != "" {
		sum := sha1.Sum(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("%s: SHA1 check failed: index says %s, got %s", p, want, got)
		}
	}
	return nil
}

// NeedsDownload reports whether the package has no local instance with the
// same instance key in cache.
func NeedsDownload(cache *Cache, p *Package) bool {
	if cache == nil {
		return true
	}
	_, ok := cache.Local[p.Key()]
	return !ok
}

// Sync downloads and verifies every package of pkgs that NeedsDownload,
// storing it in cache, and returns those it downloaded. It goes on after a
// failure and returns all failures joined.
func (c *Client) Sync(ctx context.Context, cache *Cache, pkgs []*Package) ([]*Package, error) {
	if cache.Local == nil {
		cache.Local = map[InstanceKey]*LocalPackage{}
	}
	var got []*Package
	var errs []error
	for _, p := range pkgs {
		if !NeedsDownload(cache, p) {
			continue
		}
		data, err := c.Download(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cache.Local[p.Key()] = &LocalPackage{URL: p.URL(), Data: data}
		got = append(got, p)
	}
	return got, errors.Join(errs...)
}
