package main

// Smuggling probes sent DIRECTLY to this server (no sidecar): which tool does mcp-go run, which
// method does it dispatch, which id does it answer with, for JSON shapes a naive proxy could read
// differently (case-folded duplicate keys, exact duplicates, Unicode folding, float ids).
// The expectations below are what mcp-go v1.2.1 on Go 1.26 does; README.md has the table.
//
//	GOTOOLCHAIN=local go test -run TestSmuggling -v .

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type rpcClient struct {
	t   *testing.T
	url string
	sid string
}

func (c *rpcClient) post(body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" && c.sid == "" {
		c.sid = sid
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// startSession runs initialize + notifications/initialized on a fresh server recording to a fresh file.
func startSession(t *testing.T) (*rpcClient, string) {
	t.Helper()
	rec := filepath.Join(t.TempDir(), "record.jsonl")
	r, err := openRecorder(rec)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(options{}, r))
	t.Cleanup(srv.Close)
	c := &rpcClient{t: t, url: srv.URL + "/mcp"}
	if code, body := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}`); code != 200 || c.sid == "" {
		t.Fatalf("initialize: %d %s (sid %q)", code, body, c.sid)
	}
	if code, body := c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`); code != 202 {
		t.Fatalf("initialized: %d %s", code, body)
	}
	return c, rec
}

// whatRan returns the tool/resource/prompt lines of the record ("" if nothing ran).
func whatRan(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("record line %q: %v", sc.Text(), err)
		}
		if _, ok := m["method"]; !ok { // not an HTTP line
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, " ")
}

func TestSmuggling(t *testing.T) {
	const getEnv = `{"ran":"get-env","args":{}}`
	cases := []struct {
		name, body string
		ran        string // the record's non-HTTP lines after the request
		resp       string // substring expected in the response
	}{
		{"baseline echo",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}`,
			`{"ran":"echo","args":{"message":"x"}}`, `"Echo: x"`},
		{"name then Name",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"get-env","arguments":{"message":"x"}}}`,
			`{"ran":"get-env","args":{"message":"x"}}`, `ENV-SECRET`},
		{"Name then name",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"get-env","name":"echo","arguments":{"message":"x"}}}`,
			`{"ran":"echo","args":{"message":"x"}}`, `"Echo: x"`},
		{"name then NAME",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"name then nAme",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","nAme":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"only NAME (no exact name key)",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"duplicate name: echo then get-env",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"duplicate name: get-env then echo",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env","name":"echo","arguments":{"message":"x"}}}`,
			`{"ran":"echo","args":{"message":"x"}}`, `"Echo: x"`},
		{"tool name is case-sensitive: GET-ENV",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"GET-ENV"}}`,
			``, `"error"`},
		{"METHOD then method (tools/list last)",
			`{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","method":"tools/list","params":{"name":"get-env"}}`,
			``, `"tools":[`},
		{"method then METHOD (tools/call last)",
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call","params":{"name":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"duplicate method: tools/list then tools/call",
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"params then PARAMS",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"PARAMS":{"name":"get-env"}}`,
			`{"ran":"get-env","args":{"message":"x"}}`, `ENV-SECRET`},
		{"params then paramſ (U+017F)",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"paramſ":{"name":"get-env"}}`,
			`{"ran":"get-env","args":{"message":"x"}}`, `ENV-SECRET`},
		{"params then \\u017f-escaped key",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"param\u017f":{"name":"get-env"}}`,
			`{"ran":"get-env","args":{"message":"x"}}`, `ENV-SECRET`},
		{"arguments then argumentſ",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"argumentſ":{"message":"smuggled"}}}`,
			`{"ran":"echo","args":{"message":"smuggled"}}`, `"Echo: smuggled"`},
		{"keys inside arguments are NOT folded: meſſage",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"meſſage":"x"}}}`,
			`{"ran":"echo","args":{"meſſage":"x"}}`, `"isError":true`},
		{"jſonrpc (U+017F) accepted as jsonrpc",
			`{"jſonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		// A wrong-typed value shows that the key was matched to params.task (Kelvin sign, U+212A).
		{"tasK (Kelvin U+212A, raw UTF-8) matched to task",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"tas` + "\u212a" + `":5}}`,
			``, `params.task of type mcp.TaskParams`},
		{"tas\\u212a (JSON escape) matched to task",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"tas\u212a":5}}`,
			``, `params.task of type mcp.TaskParams`},
		{"resources/read uri then URI",
			`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://resource/static/document/architecture.md","URI":"demo://resource/static/document/features.md"}}`,
			`{"read":"demo://resource/static/document/features.md"}`, `# Features`},
		{"prompts/get name then NAME",
			`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"simple-prompt","NAME":"args-prompt","arguments":{"city":"Oslo"}}}`,
			`{"prompt":"args-prompt","args":{"city":"Oslo"}}`, `Oslo`},
		{"batch array with get-env",
			`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}}]`,
			``, `"code":-32700`},
		{"two concatenated objects",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}`,
			``, `"code":-32700`},
		// ids
		{"id 1.0", `{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}`, ``, `"id":1,`},
		{"id 1e0", `{"jsonrpc":"2.0","id":1e0,"method":"tools/list"}`, ``, `"id":1,`},
		{"id 1.5", `{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}`, ``, `"id":1.5,`},
		{"id -0", `{"jsonrpc":"2.0","id":-0,"method":"tools/list"}`, ``, `"id":-0,`},
		{"id 2^53+1", `{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}`, ``, `"id":9007199254740992,`},
		{"id 1e400 (overflow)", `{"jsonrpc":"2.0","id":1e400,"method":"tools/list"}`, ``, `"code":-32700`},
		{"id \"1\" (string)", `{"jsonrpc":"2.0","id":"1","method":"tools/list"}`, ``, `"id":"1",`},
		{"id then ID", `{"jsonrpc":"2.0","id":1,"ID":2,"method":"tools/list"}`, ``, `"id":2,`},
		{"no id, ID:1 (looks like a notification)", `{"jsonrpc":"2.0","ID":1,"method":"tools/call","params":{"name":"get-env"}}`,
			getEnv, `ENV-SECRET`},
		{"no id at all (notification)", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get-env"}}`, ``, ``},
		{"id null (treated as notification)", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"get-env"}}`, ``, ``},
		{"id true", `{"jsonrpc":"2.0","id":true,"method":"tools/list"}`, ``, `"id":true,`},
		{"id object", `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}`, ``, `"id":{"a":1},`},
	}
	var table bytes.Buffer
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := startSession(t)
			code, resp := c.post(tc.body)
			ran := whatRan(t, rec)
			short := resp
			if len(short) > 200 {
				short = short[:200] + "..."
			}
			table.WriteString("| " + tc.name + " | `" + tc.body + "` | " + orNone(ran) + " | " + strconv.Itoa(code) + " `" + short + "` |\n")
			if ran != tc.ran {
				t.Errorf("ran %q, want %q (HTTP %d %s)", ran, tc.ran, code, resp)
			}
			if !strings.Contains(resp, tc.resp) {
				t.Errorf("response %q does not contain %q", resp, tc.resp)
			}
		})
	}
	if testing.Verbose() {
		t.Logf("\n| case | body | what ran | response |\n|---|---|---|---|\n%s", table.String())
	}
}

func orNone(s string) string {
	if s == "" {
		return "(nothing)"
	}
	return "`" + s + "`"
}
