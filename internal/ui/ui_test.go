package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	return w
}

func TestServesFilesWithStrictHeaders(t *testing.T) {
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/ui/", "text/html; charset=utf-8", "<title>agentplane</title>"},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>agentplane</title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "use strict"},
		{"/ui/app.css", "text/css; charset=utf-8", "--accent"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	} {
		w := serve(t, http.MethodGet, tc.path, nil)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d", tc.path, w.Code)
		}
		h := w.Header()
		if h.Get("Content-Type") != tc.ctype || !strings.Contains(w.Body.String(), tc.contains) {
			t.Errorf("%s: type %q, body lacks %q", tc.path, h.Get("Content-Type"), tc.contains)
		}
		if h.Get("Content-Security-Policy") != ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("ETag") == "" {
			t.Errorf("%s: headers %v", tc.path, h)
		}
		again := serve(t, http.MethodGet, tc.path, map[string]string{"If-None-Match": h.Get("ETag")})
		if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("%s: revalidation answered %d with %d bytes", tc.path, again.Code, again.Body.Len())
		}
	}
	for _, p := range []string{"/ui/nope.js", "/ui/static/app.js", "/ui/../go.mod", "/other"} {
		if w := serve(t, http.MethodGet, p, nil); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, w.Code)
		}
	}
	if w := serve(t, http.MethodGet, "/ui", nil); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/ui/" {
		t.Errorf("/ui: %d to %q", w.Code, w.Header().Get("Location"))
	}
	if w := serve(t, http.MethodPost, "/ui/", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
	if w := serve(t, http.MethodHead, "/ui/app.js", nil); w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
}

// TestPageKeepsToItsCSP checks statically what the CSP would refuse at run time (the browser
// test in test/ui checks it dynamically): no inline script, no inline style or event handler
// attributes, and no HTML built from strings in the script.
func TestPageKeepsToItsCSP(t *testing.T) {
	page := string(files[""].body)
	for _, m := range regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline script: %s", m[0])
		}
	}
	if m := regexp.MustCompile(`(?i)\s(style|on[a-z]+)\s*=`).FindString(page); m != "" {
		t.Errorf("page has an inline %q attribute", m)
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(page, -1) {
		ref := m[1]
		if strings.HasPrefix(ref, "../") {
			continue // the gateway's own endpoints
		}
		if strings.Contains(ref, "//") {
			t.Errorf("page loads %s from another origin", ref)
			continue
		}
		if _, ok := files[ref]; !ok {
			t.Errorf("page refers to %s, which is not embedded", ref)
		}
	}
	js := string(files["app.js"].body)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"style\"", "localStorage"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}
