// mcp-go-server: an upstream MCP server (Streamable HTTP, github.com/mark3labs/mcp-go) for
// mcp-warden's adversarial tests. It mirrors the tool/resource/prompt names of
// @modelcontextprotocol/server-everything so one policy config fits both, and it RECORDS what it
// received and what ran, one JSON line per event, so a test can assert what got past the sidecar.
//
//	mcp-go-server [--listen 127.0.0.1:0] [--record FILE] [--stateless|--stateful] [--sse] [--allow-any-host]
//
// Once listening it prints exactly one line to stdout: "listening on http://127.0.0.1:PORT/mcp".
// Record lines (appended to FILE with O_APPEND, one write per line):
//
//	{"method":"POST","path":"/mcp","headers":{"Mcp-Session-Id":"..."},"body":"{...raw body...}"}
//	{"ran":"echo","args":{"message":"hi"}}
//	{"read":"demo://resource/static/document/architecture.md"}
//	{"prompt":"simple-prompt","args":{}}
//
// See README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// EnvSecret is what the "critical" tool get-env returns; a test that finds it in a response knows
// get-env ran.
const EnvSecret = "ENV-SECRET"

// A 1x1 PNG (get-tiny-image).
const tinyPNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

// recordedHeaders are copied into each HTTP record line when present (canonical names).
var recordedHeaders = []string{
	"Mcp-Session-Id", "Mcp-Method", "Mcp-Name", "Mcp-Protocol-Version", "Last-Event-Id",
	"Content-Type", "Accept", "Authorization", "Host", "Origin", "Traceparent",
}

// Recorder appends JSON lines to a file. A nil *Recorder records nothing.
type Recorder struct {
	mu sync.Mutex
	f  *os.File
}

func openRecorder(path string) (*Recorder, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &Recorder{f: f}, nil
}

// Line writes v as one JSON line in a single write(2).
func (r *Recorder) Line(v any) {
	if r == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		log.Printf("record: %v", err)
		return
	}
	b = append(b, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.Write(b); err != nil {
		log.Printf("record: %v", err)
	}
}

type httpRecord struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type ranRecord struct {
	Ran  string `json:"ran"`
	Args any    `json:"args"`
}

type readRecord struct {
	Read string `json:"read"`
}

type promptRecord struct {
	Prompt string            `json:"prompt"`
	Args   map[string]string `json:"args"`
}

// recordHTTP wraps next: the raw body of every request is recorded before next sees it.
func recordHTTP(rec *Recorder, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil {
			var err error
			body, err = io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h := map[string]string{}
		for _, k := range recordedHeaders {
			if k == "Host" {
				h[k] = r.Host
				continue
			}
			if vs := r.Header.Values(k); len(vs) > 0 {
				h[k] = strings.Join(vs, ", ")
			}
		}
		rec.Line(httpRecord{Method: r.Method, Path: r.URL.RequestURI(), Headers: h, Body: string(body)})
		next.ServeHTTP(w, r)
	})
}

func text(s string) *mcp.CallToolResult { return mcp.NewToolResultText(s) }

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func newMCPServer(rec *Recorder, sse bool) *server.MCPServer {
	hooks := &server.Hooks{}
	if sse {
		// mcp-go answers application/json unless the session asked to be upgraded (or a notification
		// is sent mid-request). Not for initialize: mcp-go sends Mcp-Session-Id only on a JSON answer.
		hooks.AddBeforeAny(func(ctx context.Context, _ any, method mcp.MCPMethod, _ any) {
			if method == mcp.MethodInitialize {
				return
			}
			if s, ok := server.ClientSessionFromContext(ctx).(server.SessionWithStreamableHTTPConfig); ok {
				s.UpgradeToSSEWhenReceiveNotification()
			}
		})
	}
	s := server.NewMCPServer("mcp-warden-test-go-server", "1.0.0",
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true),
		server.WithPromptCapabilities(true),
		server.WithHooks(hooks),
	)

	ran := func(req mcp.CallToolRequest) {
		args := req.GetArguments()
		if args == nil {
			args = map[string]any{}
		}
		rec.Line(ranRecord{Ran: req.Params.Name, Args: args})
	}

	s.AddTool(mcp.NewTool("echo",
		mcp.WithDescription("Echoes back the input string"),
		mcp.WithString("message", mcp.Description("Message to echo"), mcp.Required()),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran(req)
		msg, err := req.RequireString("message")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return text("Echo: " + msg), nil
	})

	s.AddTool(mcp.NewTool("get-sum",
		mcp.WithDescription("Returns the sum of two numbers"),
		mcp.WithNumber("a", mcp.Description("First number"), mcp.Required()),
		mcp.WithNumber("b", mcp.Description("Second number"), mcp.Required()),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran(req)
		a, errA := req.RequireFloat("a")
		b, errB := req.RequireFloat("b")
		if err := errors.Join(errA, errB); err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return text(fmt.Sprintf("The sum of %s and %s is %s.", num(a), num(b), num(a+b))), nil
	})

	s.AddTool(mcp.NewTool("get-env",
		mcp.WithDescription("Returns the server's environment (critical: here a fixed marker)"),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran(req)
		return text(EnvSecret), nil
	})

	s.AddTool(mcp.NewTool("get-tiny-image",
		mcp.WithDescription("Returns a tiny PNG image"),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran(req)
		return &mcp.CallToolResult{Content: []mcp.Content{
			mcp.NewTextContent("Here's a tiny image:"),
			mcp.NewImageContent(tinyPNG, "image/png"),
		}}, nil
	})

	addDoc := func(name, mime, body string) {
		uri := "demo://resource/static/document/" + name
		s.AddResource(mcp.NewResource(uri, name, mcp.WithMIMEType(mime),
			mcp.WithResourceDescription("Static document "+name)),
			func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
				rec.Line(readRecord{Read: req.Params.URI})
				return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: mime, Text: body}}, nil
			})
	}
	addDoc("architecture.md", "text/markdown", "# Architecture\n\nmcp-warden test upstream (Go, mcp-go).\n")
	addDoc("features.md", "text/markdown", "# Features\n\nTools: echo, get-sum, get-env, get-tiny-image.\n")

	s.AddResourceTemplate(mcp.NewResourceTemplate("demo://resource/dynamic/text/{id}", "Dynamic text resource",
		mcp.WithTemplateMIMEType("text/plain")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			rec.Line(readRecord{Read: req.Params.URI})
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain",
				Text: "Dynamic text resource " + strings.TrimPrefix(req.Params.URI, "demo://resource/dynamic/text/")}}, nil
		})

	prompt := func(req mcp.GetPromptRequest, textOut string) *mcp.GetPromptResult {
		args := req.Params.Arguments
		if args == nil {
			args = map[string]string{}
		}
		rec.Line(promptRecord{Prompt: req.Params.Name, Args: args})
		return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
			{Role: mcp.RoleUser, Content: mcp.NewTextContent(textOut)},
		}}
	}
	s.AddPrompt(mcp.NewPrompt("simple-prompt", mcp.WithPromptDescription("A prompt with no arguments")),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return prompt(req, "This is a simple prompt without arguments."), nil
		})
	s.AddPrompt(mcp.NewPrompt("args-prompt", mcp.WithPromptDescription("A prompt with arguments"),
		mcp.WithArgument("city", mcp.ArgumentDescription("Name of the city"), mcp.RequiredArgument()),
		mcp.WithArgument("state", mcp.ArgumentDescription("Name of the state"))),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			loc := req.Params.Arguments["city"]
			if st := req.Params.Arguments["state"]; st != "" {
				loc += ", " + st
			}
			return prompt(req, "What's weather in "+loc+"?"), nil
		})
	return s
}

type options struct {
	listen       string
	record       string
	stateless    bool
	stateful     bool
	sse          bool
	json         bool
	allowAnyHost bool
}

// newHandler builds the whole HTTP handler: recorder around mcp-go's Streamable HTTP handler at /mcp.
func newHandler(o options, rec *Recorder) http.Handler {
	var hopts []server.StreamableHTTPOption
	if o.stateless {
		hopts = append(hopts, server.WithStateLess(true))
	}
	if o.stateful {
		hopts = append(hopts, server.WithStateful(true))
	}
	if o.allowAnyHost {
		hopts = append(hopts, server.WithDisableLocalhostProtection(true))
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(newMCPServer(rec, o.sse), hopts...))
	return recordHTTP(rec, mux)
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("mcp-go-server: ")
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback address to listen on (host must be a loopback IP)")
	flag.StringVar(&o.record, "record", "", "append one JSON line per HTTP request and per tool/resource/prompt run to this file")
	flag.BoolVar(&o.stateless, "stateless", false, "mcp-go WithStateLess: no Mcp-Session-Id is issued or checked")
	flag.BoolVar(&o.stateful, "stateful", false, "mcp-go WithStateful: issued session ids are validated (unknown id -> 404)")
	flag.BoolVar(&o.sse, "sse", false, "answer every request but initialize as text/event-stream (default: application/json)")
	flag.BoolVar(&o.json, "json", false, "answer with application/json (mcp-go's default; the opposite of --sse)")
	flag.BoolVar(&o.allowAnyHost, "allow-any-host", false, "disable mcp-go's DNS-rebinding check (403 on a non-loopback Host header)")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments: %q", flag.Args())
	}
	if o.stateless && o.stateful {
		log.Fatal("--stateless and --stateful are exclusive")
	}
	if o.sse && o.json {
		log.Fatal("--sse and --json are exclusive")
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		log.Fatalf("--listen %q: %v", o.listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("--listen %q: the host must be a loopback IP such as 127.0.0.1", o.listen)
	}
	rec, err := openRecorder(o.record)
	if err != nil {
		log.Fatalf("--record: %v", err)
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: newHandler(o, rec), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on http://%s/mcp\n", ln.Addr())
	_ = os.Stdout.Sync()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
