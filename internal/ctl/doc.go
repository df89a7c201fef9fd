// Package ctl is the operator control plane (SPEC O2), shaped after FRR's
// vtysh: a daemon embeds a Server that answers IOS-style commands on a unix
// control socket, and `groupvpn cli` (Shell over a Client) is the operator's
// end. docs/cli.md is the operator's and the daemon author's guide.
//
// # Protocol (version 1)
//
// Newline-delimited JSON over a unix stream socket (mode 0600). The client
// writes one request per line and reads one response per line, in order; a
// connection may carry any number of requests.
//
//	request:  {"v":1,"id":7,"cmd":"show crypto gdoi ks members | include 10.0"}
//	response: {"v":1,"id":7,"ok":true,"text":"...\n","data":{...}}
//	failure:  {"v":1,"id":8,"ok":false,"error":"% Invalid input detected at '^' marker.","pos":17}
//
// Request fields: v (must be 1: any other version is refused with an error
// naming both), id (echoed), cmd (a command line, possibly abbreviated and
// with output filters, or a built-in), line (for ?complete), input (text the
// command reads), answer and token (continuing a prompt).
//
// Response fields: v, id, ok; text (what an operator reads, filters
// applied); data (the command's machine-readable result, unfiltered; absent
// if none); error (why ok is false); pos (byte offset in cmd of the word an
// error is about: the client draws the IOS '^' marker under it); prompt and
// token (the command asks a question).
//
// Streamed replies (issue 18): a request with "stream":true may be
// answered with any number of chunk lines before its last line:
//
//	{"v":1,"id":7,"ok":true,"more":true,"text":"...32 KiB of whole lines...\n"}
//	{"v":1,"id":7,"ok":true,"text":"...the rest...\n"}
//
// The output is the chunks' text then the last line's, in order. The
// server renders as the client reads (a chunk of ChunkSize at a time,
// blocking on a client that does not read, for at most
// Limits.StreamTimeout), so no reply is ever held whole; the filters work
// line by line. A streamed reply has no data unless the command has small
// data besides (`| json` streams the data instead). Without "stream" (a
// client that predates it) the reply is one line of at most MaxResponse
// (16 MiB): longer output is refused with an error saying so; a server
// that predates it ignores the field and answers in one line, which is a
// last line. Client.Do collects up to MaxText and marks more Truncated;
// Client.Stream writes the output as it comes.
//
// A request line longer than MaxRequest (64 KiB) is discarded and answered
// with an error (id 0); a line that is not JSON is answered with an error
// (id 0); neither closes the connection.
//
// Built-ins start with '?': {"cmd":"?complete","line":"sh cr"} answers the
// candidates for the last word, or for the next word if line ends in a space
// (data: Completion; text: the IOS '?' listing); "?help" lists every command
// (data: []HelpEntry); "?hostname" answers the prompt's host name (data: a
// JSON string). "?monitor", as the first request of a connection, makes it
// a stream of the daemon's log lines, one response each (terminal monitor,
// monitor.go).
//
// Prompts: a handler that needs confirmation makes the server answer
//
//	{"v":1,"id":9,"ok":false,"prompt":"Are you sure you want to proceed ? [yes/no]: ","token":"T","error":"confirmation required: ..."}
//
// and the client sends the same cmd again with "answer" and "token"; the
// server runs the handler again with every answer so far (Request.Answers),
// so a command can ask several questions. Tokens belong to the connection
// and are single-use. A client without a terminal never blocks on a prompt:
// it answers from --yes/--answer or fails, saying how to pass the answer.
//
// # Commands
//
// Server.Handle registers a pattern: lower-case literal keywords,
// placeholders WORD (any word), NUMBER (unsigned decimal), A.B.C.D (IPv4),
// X:X::X (IPv6) and LINE (the rest of the line; last only), and [optional]
// parts, which nest:
//
//	show crypto gdoi ks members
//	show crypto gdoi group WORD
//	clear crypto gdoi [group WORD] ks members [now]
//	crypto gdoi ks peer addr=A.B.C.D
//
// A placeholder's Args key is the keyword before it ("group") unless named
// with NAME=TYPE. Every keyword present is also in Args (mapped to itself),
// so Request.Has("now") tells an optional keyword was given.
//
// Matching is word by word, as on IOS: a keyword may be abbreviated to any
// prefix that is unique among the keywords possible at that position ("sh
// cry gd ks mem"); an exact keyword beats a longer one it prefixes; a word
// matching no keyword may fill a placeholder, typed ones (NUMBER, A.B.C.D,
// X:X::X) before WORD. Errors are IOS's, to the letter: `% Ambiguous
// command:  "sh c"` (two spaces; `sh c?` lists the candidates),
// `% Invalid input detected at '^' marker.`
// (with pos), `% Incomplete command.`.
//
// # Output filters
//
// The server applies `| include RE`, `| exclude RE`, `| begin RE`,
// `| section RE`, `| count [RE]` and `| json` to every successful reply;
// they chain. Names may be abbreviated (`| i`). A stage starts at a '|'
// after a space, so `a|b` stays one regular expression; the expression is
// the rest of the stage, case-sensitive (RE2). `| json` shows the handler's
// Data as indented JSON, or {"text":[lines]} if there is none or when an
// earlier stage has filtered the text.
package ctl
