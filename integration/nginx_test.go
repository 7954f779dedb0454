package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// The nginx side of the binhost tests: nginx.conf.tmpl rendered for a test
// instance on 127.0.0.1 serving a pkgdirfs mount, and the HTTP behaviour a
// Portage client relies on (portage-facts.md §7, §9 pitfalls 4, 8, 9).

const nginxTemplate = "nginx.conf.tmpl"

// nginxConf holds the template's fields.
type nginxConf struct {
	User   string // worker user
	Listen string // 127.0.0.1:PORT
	Root   string // the mount
	Prefix string // pid, logs/, temp dirs
}

type nginxServer struct {
	URL    string // http://127.0.0.1:PORT, no trailing slash
	Conf   string
	Prefix string
	Root   string
	User   string
	cmd    *exec.Cmd
	done   chan struct{}
}

// needNginx fails the test unless nginx is installed with thread support.
func needNginx(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatalf("nginx not found in PATH (apt-get install -y nginx; `make deps` lists it): %v", err)
	}
	// Not run(): that takes a *testing.T, and benchmarks use this too.
	out, err := exec.Command("nginx", "-V").CombinedOutput()
	if !strings.Contains(string(out), "--with-threads") {
		t.Fatalf("nginx -V does not show --with-threads, but nginx.conf.tmpl uses `aio threads` (%v): %s", err, out)
	}
}

// nginxWorkerUser is www-data when it exists (the realistic setup, which
// needs the mount's --allow-other), else root.
func nginxWorkerUser() string {
	if _, err := user.Lookup("www-data"); err == nil {
		return "www-data"
	}
	return "root"
}

// renderNginxConf renders nginx.conf.tmpl into PREFIX/nginx.conf.
func renderNginxConf(t testing.TB, c nginxConf) string {
	t.Helper()
	tmpl, err := template.New(nginxTemplate).Option("missingkey=error").ParseFiles(nginxTemplate)
	if err != nil {
		t.Fatalf("parse %s: %v", nginxTemplate, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, c); err != nil {
		t.Fatalf("render %s: %v", nginxTemplate, err)
	}
	if strings.Contains(buf.String(), "{{") || strings.Contains(buf.String(), "<no value>") {
		t.Fatalf("rendered %s still holds template syntax:\n%s", nginxTemplate, buf.String())
	}
	if err := os.MkdirAll(filepath.Join(c.Prefix, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(c.Prefix, "nginx.conf")
	if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNginx renders the template for root and runs nginx in the foreground
// on a free port of 127.0.0.1 until the test ends. Register it after the
// mount, so that it stops (closing its cached fds) before the unmount.
func startNginx(t testing.TB, root string) *nginxServer {
	t.Helper()
	needNginx(t)
	var last string
	for attempt := 0; attempt < 3; attempt++ {
		prefix := t.TempDir()
		port := freePort(t)
		c := nginxConf{User: nginxWorkerUser(), Listen: fmt.Sprintf("127.0.0.1:%d", port), Root: root, Prefix: prefix}
		conf := renderNginxConf(t, c)
		errLog := filepath.Join(prefix, "logs", "error.log")
		out, err := os.Create(filepath.Join(prefix, "logs", "stderr.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("nginx", "-c", conf, "-p", prefix+"/", "-e", errLog, "-g", "daemon off;")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			out.Close()
			t.Fatalf("start nginx: %v", err)
		}
		out.Close()
		s := &nginxServer{URL: "http://" + c.Listen, Conf: conf, Prefix: prefix, Root: root, User: c.User, cmd: cmd, done: make(chan struct{})}
		go func() { cmd.Wait(); close(s.done) }()
		ready := false
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-s.done:
				deadline = time.Time{}
				continue
			default:
			}
			if conn, err := net.DialTimeout("tcp", c.Listen, 200*time.Millisecond); err == nil {
				conn.Close()
				ready = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ready {
			t.Cleanup(func() { s.stop(t) })
			return s
		}
		s.stop(t)
		last = fmt.Sprintf("nginx -c %s did not come up on %s:\nerror.log:\n%s\nstderr:\n%s", conf, c.Listen,
			readLog(errLog), readLog(filepath.Join(prefix, "logs", "stderr.log")))
		if !strings.Contains(last, "Address already in use") {
			break
		}
	}
	t.Fatal(last)
	return nil
}

// stop sends SIGTERM (fast shutdown) to the master we started and waits.
func (s *nginxServer) stop(t testing.TB) {
	t.Helper()
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("nginx (pid %d) did not exit 10 s after SIGTERM; killing it", s.cmd.Process.Pid)
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if t.Failed() {
		t.Logf("nginx error.log (%s):\n%s", s.Prefix, readLog(filepath.Join(s.Prefix, "logs", "error.log")))
	}
}

// httpClient never decodes transparently and never follows redirects, so
// what nginx sends is what the test sees.
var nginxHTTP = &http.Client{
	Timeout:       20 * time.Second,
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// httpDo makes one request; hdr holds extra request headers (name, value, ...).
func httpDo(t *testing.T, method, url string, hdr ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := nginxHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return httpResult{resp.StatusCode, resp.Header, body}
}

// curlHead runs `curl -sI URL` and returns the status and the headers (lower-case names).
func curlHead(t *testing.T, url string) (int, map[string]string) {
	t.Helper()
	out := mustRun(t, "", "curl", "-sI", "--max-time", "20", url)
	lines := strings.Split(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n")
	status := 0
	if f := strings.Fields(lines[0]); len(f) >= 2 {
		status, _ = strconv.Atoi(f[1])
	}
	h := map[string]string{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return status, h
}

// curlStatus is `curl -s -o /dev/null -w %{http_code} URL`.
func curlStatus(t *testing.T, url string) int {
	t.Helper()
	out := mustRun(t, "", "curl", "-s", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", url)
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// mountFiles lists the regular files of the mount: relative path -> size
// (`find -type f -printf`).
func mountFiles(t *testing.T, mnt string) map[string]int64 {
	t.Helper()
	out := mustRun(t, mnt, "find", "-L", ".", "-type", "f", "-printf", "%P\t%s\n") // -L: flat and All/ names are symlinks
	res := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, s, ok := strings.Cut(l, "\t")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(s, 10, 64)
		res[p] = n
	}
	return res
}

// served is a state holding some fixtures, mounted with --allow-other and
// served by nginx.
type served struct {
	State, Mnt string
	NG         *nginxServer
	Dirs       map[string]string // fixture name -> extracted PKGDIR
}

// setupServed imports the fixtures into one fresh state, mounts it with
// --allow-other and serves it with nginx.
func setupServed(t *testing.T, fixtures ...string) *served {
	t.Helper()
	needBinary(t)
	needNginx(t)
	s := &served{State: filepath.Join(t.TempDir(), "state"), Dirs: map[string]string{}}
	var dirs []string
	for _, f := range fixtures {
		s.Dirs[f] = extractFixture(t, f)
		dirs = append(dirs, s.Dirs[f])
	}
	r, sum := importDirs(t, s.State, dirs...)
	if r.Code != 0 || sum.Invalid != 0 {
		t.Fatalf("import %v: want exit 0 and no invalid file, got exit %d, %+v: %s", fixtures, r.Code, sum, r)
	}
	s.Mnt = mountFS(t, s.State, "--allow-other")
	s.NG = startNginx(t, s.Mnt)
	return s
}

func httpDate(sec int64) string { return time.Unix(sec, 0).UTC().Format(http.TimeFormat) }

// TestNginxConfig: the template renders to a configuration `nginx -t` accepts.
func TestNginxConfig(t *testing.T) {
	needNginx(t)
	prefix := t.TempDir()
	conf := renderNginxConf(t, nginxConf{User: nginxWorkerUser(), Listen: "127.0.0.1:1", Root: t.TempDir(), Prefix: prefix})
	r := run(t, "", toolTimeout, "nginx", "-t", "-c", conf, "-p", prefix+"/", "-e", filepath.Join(prefix, "logs", "error.log"))
	if r.Code != 0 {
		t.Fatalf("nginx -t rejects the rendered template: %s", r)
	}
	b, _ := os.ReadFile(conf)
	for _, want := range []string{"sendfile on;", "aio threads;", "gzip off;", "autoindex off;", "if_modified_since before;",
		"open_file_cache off;", "immutable", "try_files $uri =404;"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
}

// TestNginxHTTP judges the HTTP behaviour of nginx over the mount: sizes,
// HEAD, Range, validators and conditional requests of the index, cache
// headers, and genuine 404s.
func TestNginxHTTP(t *testing.T) {
	sv := setupServed(t, "xpak-gzip-flat", "gpkg-xz-flat", "xpak-xz-multi")
	mnt, ng := sv.Mnt, sv.NG
	// The workers run as the configured user, reading the mount through --allow-other.
	if want, err := user.Lookup(ng.User); err == nil {
		// A worker just forked runs as root until it drops to the user:
		// each must have dropped within a few seconds.
		var wrong []procInfo
		workers := 0
		pollFor(5*time.Second, func() bool {
			ws := nginxWorkers(ng.cmd.Process.Pid)
			workers, wrong = len(ws), nil
			for _, w := range ws {
				if w.uid != want.Uid {
					wrong = append(wrong, w)
				}
			}
			return workers > 0 && len(wrong) == 0
		})
		for _, w := range wrong {
			t.Errorf("nginx worker pid %d runs as uid %s, want %s (%s)", w.pid, w.uid, want.Uid, ng.User)
		}
		if workers == 0 {
			t.Errorf("found no worker process of nginx master pid %d", ng.cmd.Process.Pid)
		}
	}
	files := mountFiles(t, mnt)
	if len(files) < 10 {
		t.Fatalf("mount %s shows only %d files: %v", mnt, len(files), files)
	}
	plain, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	gzBytes, err := os.ReadFile(filepath.Join(mnt, "Packages.gz"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := parseIndex(plain)
	if err != nil {
		t.Fatalf("mount's Packages: %v", err)
	}
	ts := getInt(ix.Header, "TIMESTAMP")

	t.Run("index", func(t *testing.T) {
		for name, want := range map[string][]byte{"Packages": plain, "Packages.gz": gzBytes} {
			st := statOne(t, filepath.Join(mnt, name))
			a := httpDo(t, "GET", ng.URL+"/"+name, "Accept-Encoding", "gzip, deflate")
			if a.Status != 200 {
				t.Fatalf("GET /%s: want 200, got %d", name, a.Status)
			}
			if !bytes.Equal(a.Body, want) {
				t.Errorf("GET /%s: body (%d bytes) differs from the mount's file (%d bytes)", name, len(a.Body), len(want))
			}
			if cl := a.Header.Get("Content-Length"); cl != strconv.FormatInt(st.Size, 10) {
				t.Errorf("GET /%s: Content-Length %q, st_size %d", name, cl, st.Size)
			}
			if ce := a.Header.Get("Content-Encoding"); ce != "" {
				t.Errorf("GET /%s with Accept-Encoding gzip: want no Content-Encoding (no re-encoding), got %q", name, ce)
			}
			if lm := a.Header.Get("Last-Modified"); lm != httpDate(ts) || st.Mtime != ts {
				t.Errorf("/%s: want Last-Modified = TIMESTAMP %d (%s) = st_mtime, got Last-Modified %q, st_mtime %d", name, ts, httpDate(ts), lm, st.Mtime)
			}
			if cc := a.Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") {
				t.Errorf("/%s: want Cache-Control no-cache (the index must always be revalidated), got %q", name, cc)
			}
			etag := a.Header.Get("ETag")
			if etag == "" {
				t.Errorf("/%s: no ETag", name)
			}
			b := httpDo(t, "GET", ng.URL+"/"+name)
			if b.Header.Get("ETag") != etag || b.Header.Get("Last-Modified") != a.Header.Get("Last-Modified") {
				t.Errorf("/%s: validators changed between two requests of one generation: ETag %q -> %q, Last-Modified %q -> %q",
					name, etag, b.Header.Get("ETag"), a.Header.Get("Last-Modified"), b.Header.Get("Last-Modified"))
			}
			for _, c := range []struct {
				hdr, val string
				want     int
			}{
				{"If-None-Match", etag, 304},
				{"If-Modified-Since", httpDate(ts), 304},
				{"If-Modified-Since", httpDate(ts + 5), 304}, // what Portage sends
				{"If-Modified-Since", httpDate(ts - 1), 200},
				{"If-None-Match", `"0-0"`, 200},
			} {
				r := httpDo(t, "GET", ng.URL+"/"+name, c.hdr, c.val)
				if r.Status != c.want {
					t.Errorf("GET /%s with %s: %s: want %d, got %d", name, c.hdr, c.val, c.want, r.Status)
				}
				if c.want == 304 && len(r.Body) != 0 {
					t.Errorf("GET /%s with %s: %s: 304 with a %d-byte body", name, c.hdr, c.val, len(r.Body))
				}
			}
			// HEAD, through Go and through curl -sI.
			h := httpDo(t, "HEAD", ng.URL+"/"+name)
			if h.Status != 200 || len(h.Body) != 0 || h.Header.Get("Content-Length") != strconv.FormatInt(st.Size, 10) {
				t.Errorf("HEAD /%s: want 200, no body, Content-Length %d; got %d, %d body bytes, Content-Length %q",
					name, st.Size, h.Status, len(h.Body), h.Header.Get("Content-Length"))
			}
			if code, hdr := curlHead(t, ng.URL+"/"+name); code != 200 || hdr["content-length"] != strconv.FormatInt(st.Size, 10) {
				t.Errorf("curl -sI /%s: want 200 and Content-Length %d, got %d and %q", name, st.Size, code, hdr["content-length"])
			}
		}
		zr, err := gzip.NewReader(bytes.NewReader(gzBytes))
		if err != nil {
			t.Fatalf("Packages.gz from the mount: %v", err)
		}
		unz, _ := io.ReadAll(zr)
		if !bytes.Equal(unz, plain) {
			t.Errorf("Packages.gz decompressed (%d bytes) != Packages (%d bytes)", len(unz), len(plain))
		}
	})

	t.Run("content-length", func(t *testing.T) {
		names := make([]string, 0, len(files))
		for p := range files {
			names = append(names, p)
		}
		sort.Strings(names)
		for _, p := range names {
			h := httpDo(t, "HEAD", ng.URL+"/"+p)
			if h.Status != 200 {
				t.Errorf("HEAD /%s: want 200, got %d", p, h.Status)
				continue
			}
			if cl := h.Header.Get("Content-Length"); cl != strconv.FormatInt(files[p], 10) {
				t.Errorf("HEAD /%s: Content-Length %q, st_size %d", p, cl, files[p])
			}
		}
	})

	t.Run("cache-control", func(t *testing.T) {
		var multi, flat string
		for p := range files {
			switch strings.Count(p, "/") {
			case 2:
				multi = p
			case 1:
				flat = p
			}
		}
		if multi == "" || flat == "" {
			t.Fatalf("want both a multi-instance and a flat name on the mount, got multi=%q flat=%q", multi, flat)
		}
		if cc := httpDo(t, "HEAD", ng.URL+"/"+multi).Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("/%s (multi-instance name, immutable): want Cache-Control ... immutable, got %q", multi, cc)
		}
		if cc := httpDo(t, "HEAD", ng.URL+"/"+flat).Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") {
			t.Errorf("/%s (flat name, changes with imports): want Cache-Control no-cache, got %q", flat, cc)
		}
	})

	t.Run("range", func(t *testing.T) {
		var samples []string
		for p, size := range files {
			if size >= 200 && strings.Count(p, "/") == 2 && len(samples) < 3 {
				samples = append(samples, p)
			}
		}
		samples = append(samples, "Packages")
		for _, p := range samples {
			data, err := os.ReadFile(filepath.Join(mnt, p))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			hdrFile, bodyFile := filepath.Join(dir, "h"), filepath.Join(dir, "b")
			out := mustRun(t, "", "curl", "-s", "--max-time", "20", "-r", "100-199", "-D", hdrFile, "-o", bodyFile, "-w", "%{http_code}", ng.URL+"/"+p)
			body, _ := os.ReadFile(bodyFile)
			hdr, _ := os.ReadFile(hdrFile)
			if code := strings.TrimSpace(string(out)); code != "206" {
				t.Errorf("curl -r 100-199 /%s: want 206, got %s", p, code)
			}
			if !bytes.Equal(body, data[100:200]) {
				t.Errorf("curl -r 100-199 /%s: want bytes 100..199 of the file (%q...), got %d bytes (%q...)", p, clip(data[100:120], 20), len(body), clip(body, 20))
			}
			want := fmt.Sprintf("content-range: bytes 100-199/%d", len(data))
			if !strings.Contains(strings.ToLower(string(hdr)), want) {
				t.Errorf("curl -r 100-199 /%s: want header %q, got:\n%s", p, want, hdr)
			}
		}
	})

	t.Run("404", func(t *testing.T) {
		var cat string
		for p := range files {
			if i := strings.IndexByte(p, '/'); i > 0 && !strings.HasPrefix(p, "All/") {
				cat = p[:i]
				break
			}
		}
		missing := []string{"/app-misc/nope-1.tbz2", "/Packages.bz2", "/app-misc/nope/nope-1-1.xpak",
			"/app-misc/nope/nope-1-1.gpkg.tar", "/All/nope-1.tbz2", "/nope", "/" + cat, "/" + cat + "/", "/"}
		for _, p := range missing {
			if code := curlStatus(t, ng.URL+p); code != 404 {
				t.Errorf("GET %s (no such file): want a genuine 404, got %d", p, code)
			}
		}
	})
}

type procInfo struct {
	pid int
	uid string
}

// nginxWorkers lists the children of the nginx master with their real uid.
func nginxWorkers(master int) []procInfo {
	entries, _ := os.ReadDir("/proc")
	var res []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		var ppid int
		var uid string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(l, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					uid = f[0]
				}
			}
		}
		if ppid == master {
			res = append(res, procInfo{pid, uid})
		}
	}
	return res
}
