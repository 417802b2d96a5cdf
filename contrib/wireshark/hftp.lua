-- hftp.lua: a Wireshark / tshark dissector for HFTP, the line-oriented file
-- transfer protocol of docs/protocol.md (both revisions: classic, and 2026
-- with `help` and raw slices).
--
-- It is registered on TCP port 19500; any other port works with
-- "Decode As" (tshark: -d tcp.port==PORT,hftp). Over TLS (hftp serve
-- --tls-cert) it is registered for the ALPN protocol "hftp" and on TLS port
-- 19500: given the session keys (a key log: SSLKEYLOGFILE, or openssl
-- s_client -keylogfile), Wireshark decrypts the records and hands the
-- plain text to this dissector, which reassembles PDUs across TLS records
-- as it does across TCP segments. It shows each request
-- (command, arguments, the raw flag) and each response (status, listing
-- names, metadata size, base64 slice, raw Content-Length and body), matches
-- responses to requests across pipelining, reassembles lines and bodies
-- split over TCP segments, and marks fatal errors and protocol violations
-- as expert info. How to install and use it: docs/wireshark.md.
--
-- Why the state below is kept the way it is: an HFTP response can only be
-- parsed knowing its request (a listing, a size, a slice), and the n-th
-- response of a connection answers its n-th request. So the first, in-order
-- pass over the capture records, per TCP conversation, the requests and
-- which request each response answers; what it decided for every PDU is
-- stored under the PDU's position (frame number, position of the buffer in
-- the frame, offset in the buffer), so that later passes (tshark -2, or
-- Wireshark showing packets in any order) dissect every PDU the same way.

local hftp = Proto("hftp", "Home-made File Transfer Protocol")

local DEFAULT_PORT = 19500

-- The fixed status texts (docs/protocol.md, section 3).
local STATUS_TEXT = {
    [0] = "OK",
    [100] = "BAD EOL",
    [101] = "BAD REQUEST",
    [199] = "INTERNAL SERVER ERROR",
    [200] = "NO SUCH COMMAND",
    [201] = "INVALID ARGUMENTS FOR COMMAND",
    [202] = "FILE NOT FOUND",
    [203] = "OFFSET EXCEEDS FILE SIZE",
}

-- Known commands and their argument counts (get_slice: 3, or 4 with raw).
local COMMAND_ARGUMENTS = {
    get_file_listing = { 0 },
    get_metadata = { 1 },
    get_slice = { 3, 4 },
    help = { 0 },
    quit = { 0 },
}

local MAX_UINT64 = "18446744073709551615"

------------------------------------------------------------------------
-- Fields
------------------------------------------------------------------------

local f = {
    request = ProtoField.string("hftp.request", "Request line"),
    command = ProtoField.string("hftp.command", "Command"),
    argument = ProtoField.string("hftp.argument", "Argument"),
    name = ProtoField.string("hftp.name", "File name"),
    offset = ProtoField.uint64("hftp.offset", "Offset"),
    size = ProtoField.uint64("hftp.size", "Size"),
    raw = ProtoField.bool("hftp.raw", "Raw slice (2026)"),
    request_number = ProtoField.uint32("hftp.request_number", "Request number in the connection"),
    response_in = ProtoField.framenum("hftp.response_in", "Response in frame", base.NONE, frametype.RESPONSE),
    ignored = ProtoField.bytes("hftp.ignored", "Data the server ignores"),

    status = ProtoField.uint32("hftp.status", "Status", base.DEC, STATUS_TEXT),
    status_text = ProtoField.string("hftp.status_text", "Status text"),
    request_in = ProtoField.framenum("hftp.request_in", "Request in frame", base.NONE, frametype.REQUEST),
    response_to = ProtoField.string("hftp.response_to", "Response to"),
    response_number = ProtoField.uint32("hftp.response_number", "Response number in the connection"),
    listing_name = ProtoField.string("hftp.listing.name", "Listed file"),
    listing_count = ProtoField.uint32("hftp.listing.count", "Files listed"),
    help_command = ProtoField.string("hftp.help.command", "Command the server knows"),
    help_count = ProtoField.uint32("hftp.help.count", "Commands the server knows"),
    file_size = ProtoField.uint64("hftp.file_size", "File size"),
    base64 = ProtoField.string("hftp.base64", "Base64 slice"),
    base64_length = ProtoField.uint32("hftp.base64_length", "Base64 length"),
    decoded_length = ProtoField.uint32("hftp.decoded_length", "Decoded length"),
    decoded = ProtoField.bytes("hftp.decoded", "Decoded slice"),
    content_length = ProtoField.uint64("hftp.content_length", "Content-Length"),
    body = ProtoField.bytes("hftp.body", "Raw body"),
    body_length = ProtoField.uint32("hftp.body_length", "Raw body length"),
    body_part = ProtoField.bytes("hftp.body_part", "Part of a body too large to reassemble"),
    after_close = ProtoField.bytes("hftp.after_close", "Data after the server's last answer"),
}
hftp.fields = {}
for _, field in pairs(f) do
    table.insert(hftp.fields, field)
end

local e = {
    fatal = ProtoExpert.new("hftp.fatal", "Fatal error: the server closes the connection",
        expert.group.RESPONSE_CODE, expert.severity.ERROR),
    error_status = ProtoExpert.new("hftp.error_status", "Error status",
        expert.group.RESPONSE_CODE, expert.severity.NOTE),
    violation = ProtoExpert.new("hftp.violation", "Protocol violation",
        expert.group.PROTOCOL, expert.severity.WARN),
    fatal_request = ProtoExpert.new("hftp.fatal_request", "Request the server must answer with a fatal error",
        expert.group.PROTOCOL, expert.severity.ERROR),
    rejected = ProtoExpert.new("hftp.rejected", "Request the server rejects",
        expert.group.REQUEST_CODE, expert.severity.NOTE),
    ignored = ProtoExpert.new("hftp.ignored", "Data the server ignores",
        expert.group.SEQUENCE, expert.severity.NOTE),
    unmatched = ProtoExpert.new("hftp.unmatched", "Response without a request",
        expert.group.SEQUENCE, expert.severity.WARN),
    not_reassembled = ProtoExpert.new("hftp.not_reassembled", "Body too large to reassemble",
        expert.group.REASSEMBLE, expert.severity.NOTE),
}
hftp.experts = {
    e.fatal, e.error_status, e.violation, e.fatal_request, e.rejected, e.ignored, e.unmatched, e.not_reassembled,
}

hftp.prefs.max_line = Pref.uint("Longest request line (bytes)", 8 * 1024 * 1024,
    "The server's --max-line: a longer request line is answered 101 BAD REQUEST")
hftp.prefs.max_body = Pref.uint("Reassemble slices up to (bytes)", 64 * 1024 * 1024,
    "A raw body or base64 line larger than this is shown a segment at a time, not reassembled")

------------------------------------------------------------------------
-- State (see the header comment)
------------------------------------------------------------------------

-- Per conversation: { requests = {...}, answered = n, client_done = reason,
-- server_done = reason, client = "addr:port" }. Conversations are told apart
-- by their addresses and ports: tcp.stream would be better, but fields of
-- other protocols cannot be read on a first pass that builds no tree
-- (tshark -2), and every pass must agree.
local conversations = {}
-- "frame:buffer-offset:offset#n" -> what the first pass decided for that
-- PDU (its request, or that it is ignored data); see pdu_key.
local decided = {}

function hftp.init()
    conversations = {}
    decided = {}
end

-- The key of the PDU at `offset` of `tvb` in `decided`, and the name of its
-- counter in pinfo.private. Over TCP the frame, the buffer's position in
-- the frame's data and the offset in the buffer tell PDUs apart. Over TLS
-- each record of a frame is decrypted into a buffer of its own, and they
-- all start at position 0: so the key also counts the PDUs already shown at
-- that same position in this dissection of this frame (pinfo.private lives
-- for one dissection of one frame, in every pass alike).
local function pdu_key(tvb, pinfo, offset)
    local position = pinfo.number .. ":" .. tvb:offset() .. ":" .. offset
    local counter = "hftp " .. position
    return position .. "#" .. (pinfo.private[counter] or "0"), counter
end

-- Counts a PDU shown at the key's position (see pdu_key).
local function count_pdu(pinfo, counter)
    pinfo.private[counter] = tostring(tonumber(pinfo.private[counter] or "0") + 1)
end

local function conversation(pinfo)
    local a = tostring(pinfo.src) .. "/" .. pinfo.src_port
    local b = tostring(pinfo.dst) .. "/" .. pinfo.dst_port
    local key = a < b and a .. " " .. b or b .. " " .. a
    local conv = conversations[key]
    if not conv then
        conv = { requests = {}, answered = 0 }
        conversations[key] = conv
    end
    return conv
end

-- Whether this buffer was sent by the client. The port the dissector was
-- found by (19500, or the one given to Decode As) is the server's; when
-- both or neither match, the first side seen speaking is the client (the
-- client speaks first).
local function from_client(pinfo, conv)
    local server_port = pinfo.match_uint
    if pinfo.dst_port == server_port and pinfo.src_port ~= server_port then
        return true
    elseif pinfo.src_port == server_port and pinfo.dst_port ~= server_port then
        return false
    end
    local me = tostring(pinfo.src) .. ":" .. pinfo.src_port
    conv.client = conv.client or me
    return conv.client == me
end

------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------

local function split_tokens(line)
    local tokens = {}
    local start = 1
    while true do
        local space = string.find(line, " ", start, true)
        if not space then
            table.insert(tokens, string.sub(line, start))
            return tokens
        end
        table.insert(tokens, string.sub(line, start, space - 1))
        start = space + 1
    end
end

local function is_valid_name(name)
    return name ~= "" and name ~= "." and name ~= ".." and not string.find(name, "[^A-Za-z0-9._-]")
end

-- A decimal string as a UInt64, or nil when it does not fit in 64 bits.
local function decimal_uint64(digits)
    local significant = string.gsub(digits, "^0+", "")
    if #significant > #MAX_UINT64 or (#significant == #MAX_UINT64 and significant > MAX_UINT64) then
        return nil
    end
    local value = UInt64(0)
    for i = 1, #significant do
        value = value * 10 + tonumber(string.sub(significant, i, i))
    end
    return value
end

local function shorten(text, limit)
    if #text > limit then
        return string.sub(text, 1, limit) .. "..."
    end
    return text
end

-- The bytes of a line for display: control bytes as \xNN.
local function printable(text)
    return (string.gsub(text, "[^\32-\126]", function(c)
        return string.format("\\x%02x", string.byte(c))
    end))
end

------------------------------------------------------------------------
-- Requests (client to server)
------------------------------------------------------------------------

-- Finds the end of the request line starting at `offset` in `text` (the
-- whole buffer), judging bytes as the server does, one by one: the first
-- CR, LF or other non-printable byte decides. Returns the PDU length and,
-- for a line the server must reject at once, why; or nil and the number of
-- bytes still needed.
local function scan_request(text, offset)
    local available = #text - offset
    local max_line = hftp.prefs.max_line
    local too_long = "a request line longer than " .. max_line .. " bytes (101 BAD REQUEST)"
    local bad = string.find(text, "[^\32-\126]", offset + 1)
    -- The deciding byte's position in the PDU, from 1.
    local at = bad and bad - offset
    if not at or at - 1 > max_line then
        if available > max_line then
            return max_line + 1, too_long
        end
        return nil, DESEGMENT_ONE_MORE_SEGMENT
    end
    local byte = string.byte(text, bad)
    if byte == 10 then
        return at, "an LF without a CR before it (100 BAD EOL)"
    elseif byte == 13 then
        if bad == #text then
            return nil, 1
        end
        if string.byte(text, bad + 1) == 10 then
            return at + 1, nil
        end
        return at + 1, "a CR not followed by LF (100 BAD EOL)"
    end
    return at, string.format("the byte 0x%02x, not printable ASCII (101 BAD REQUEST)", byte)
end

-- Why the server rejects a well-formed request line, and with which
-- status; nil when the line is a valid request.
local function judge_request(tokens)
    local command = tokens[1]
    local counts = COMMAND_ARGUMENTS[command]
    if not counts then
        return "unknown command \"" .. command .. "\" (200 NO SUCH COMMAND)"
    end
    local arguments = #tokens - 1
    local count_ok = false
    for _, count in ipairs(counts) do
        count_ok = count_ok or arguments == count
    end
    if not count_ok then
        local wanted = table.concat(counts, " or ")
        return command .. " takes " .. wanted .. " argument(s), got " .. arguments
            .. " (201 INVALID ARGUMENTS FOR COMMAND)"
    end
    for i = 2, #tokens do
        if tokens[i] == "" then
            return "an empty argument, from two spaces in a row or a trailing space (201 INVALID ARGUMENTS FOR COMMAND)"
        end
    end
    if command == "get_slice" and tokens[5] and tokens[5] ~= "raw" then
        return "the fourth argument of get_slice must be \"raw\" (201 INVALID ARGUMENTS FOR COMMAND)"
    end
    if (command == "get_metadata" or command == "get_slice") and not is_valid_name(tokens[2]) then
        return "\"" .. tokens[2] .. "\" is not a valid file name (201 INVALID ARGUMENTS FOR COMMAND)"
    end
    if command == "get_slice" then
        for i = 3, 4 do
            if string.find(tokens[i], "[^0-9]") then
                return "\"" .. tokens[i] .. "\" is not a decimal number (201 INVALID ARGUMENTS FOR COMMAND)"
            end
        end
    end
    return nil
end

-- Dissects one request PDU at `offset`; returns its length, or nil and the
-- number of bytes still needed.
local function dissect_request(tvb, text, pinfo, tree, conv, offset, info, key)
    local pdu = decided[key]

    if (pdu and pdu.ignored) or (not pdu and not pinfo.visited and conv.client_done) then
        -- Everything after a fatal request or quit is never read by the server.
        if not pdu then
            pdu = { ignored = conv.client_done }
            decided[key] = pdu
        end
        local length = tvb:len() - offset
        local subtree = tree:add(hftp, tvb:range(offset, length), "HFTP, ignored data")
        subtree:add(f.ignored, tvb:range(offset, length))
        subtree:add_proto_expert_info(e.ignored,
            length .. " bytes sent after " .. pdu.ignored .. ": the server never reads them")
        info("Ignored data (after " .. pdu.ignored .. ")")
        return length
    end

    local length, fatal_reason = scan_request(text, offset)
    if not length then
        return nil, fatal_reason
    end
    if not pdu and pinfo.visited then
        -- Not seen complete on the first pass: part of a PDU shown elsewhere.
        return nil, fatal_reason
    end

    -- The line is what comes before the terminator or the offending byte
    -- (and before the CR of a CR that no LF follows).
    local line_length = length - 2
    if fatal_reason and string.find(fatal_reason, "longer than", 1, true) then
        line_length = length
    elseif fatal_reason and not string.find(fatal_reason, "^a CR not followed") then
        line_length = length - 1
    end
    local line = string.sub(text, offset + 1, offset + line_length)
    local tokens = split_tokens(line)
    local command = tokens[1]
    local note = nil
    if not fatal_reason and not string.find(line, "[^ ]") then
        fatal_reason = "an empty request line (101 BAD REQUEST)"
    elseif not fatal_reason then
        note = judge_request(tokens)
    end

    if not pdu then
        -- A request the server must reject is still parsed as its command
        -- when it names one: a server that answers 0 OK anyway sends a body.
        local known = COMMAND_ARGUMENTS[command] ~= nil and not fatal_reason
        local request = {
            frame = pinfo.number,
            line = line,
            kind = known and command or nil,
            raw = known and command == "get_slice" and tokens[5] == "raw",
            size = known and command == "get_slice" and tokens[4] and tonumber(string.match(tokens[4], "^%d+$")),
            fatal = fatal_reason,
            rejected = note,
        }
        table.insert(conv.requests, request)
        pdu = { index = #conv.requests }
        decided[key] = pdu
        if fatal_reason then
            conv.client_done = "a fatal request"
        elseif command == "quit" and not note then
            conv.client_done = "quit"
        end
    end
    local request = conv.requests[pdu.index]

    local subtree = tree:add(hftp, tvb:range(offset, length), "HFTP Request: " .. shorten(printable(line), 80))
    subtree:add(f.request, tvb:range(offset, line_length), line)
    local position = offset
    for i, token in ipairs(tokens) do
        local range = tvb:range(position, #token)
        if i == 1 then
            subtree:add(f.command, range, token)
        else
            subtree:add(f.argument, range, token)
            if (command == "get_metadata" or command == "get_slice") and i == 2 then
                subtree:add(f.name, range, token)
            elseif command == "get_slice" and (i == 3 or i == 4) and not string.find(token, "[^0-9]") and token ~= "" then
                local value = decimal_uint64(token)
                if value then
                    subtree:add(i == 3 and f.offset or f.size, range, value)
                else
                    subtree:add(range, (i == 3 and "Offset" or "Size")
                        .. ": more than 64 bits, still a number (the range check answers 203)")
                end
            elseif command == "get_slice" and i == 5 then
                subtree:add(f.raw, range, token == "raw")
            end
        end
        position = position + #token + 1
    end
    if command == "get_slice" and #tokens == 4 then
        subtree:add(f.raw, tvb:range(offset, line_length), false):set_generated()
    end
    subtree:add(f.request_number, pdu.index):set_generated()
    if request.response_frame then
        subtree:add(f.response_in, request.response_frame):set_generated()
    end
    if fatal_reason then
        subtree:add_proto_expert_info(e.fatal_request,
            "Fatal: " .. fatal_reason .. "; the server answers and closes the connection")
    elseif note then
        subtree:add_proto_expert_info(e.rejected, "Rejected: " .. note)
    end
    info("Request: " .. shorten(printable(line), 60))
    return length
end

------------------------------------------------------------------------
-- Responses (server to client)
------------------------------------------------------------------------

-- Reads the line starting at `position` (an offset in the buffer whose
-- bytes are `text`). Returns the line's text, the offset after its
-- terminator and whether the terminator was a bare LF; or nil when the
-- line is not complete yet.
local function read_line(text, position)
    local lf = string.find(text, "\n", position + 1, true)
    if not lf then
        return nil
    end
    local line = string.sub(text, position + 1, lf - 1)
    local bare = true
    if string.sub(line, -1) == "\r" then
        line = string.sub(line, 1, -2)
        bare = false
    end
    return line, lf, bare
end

local function base64_decoded_length(text)
    if #text % 4 ~= 0 or string.find(text, "[^A-Za-z0-9+/=]") or string.find(text, "=[^=]")
        or string.find(text, "===") then
        return nil
    end
    local padding = #string.match(text, "=*$")
    return #text / 4 * 3 - padding
end

-- A base64 line this long (or longer) is awaited with its exact expected
-- length rather than a segment at a time: reassembling segment by segment
-- costs time in the square of the length.
local LONG_BASE64 = 65536

-- Works out how long the response at `offset` is, for `request` (nil when
-- unknown). Returns a description of its parts, or nil and the number of
-- bytes still needed. A body larger than the reassembly limit is not
-- awaited: `parts.continued` says how many of its bytes come later.
local function measure_response(text, offset, request)
    local kind = request and request.kind
    local available = #text - offset
    local max_body = hftp.prefs.max_body
    local status_line, position, bare = read_line(text, offset)
    if not status_line then
        if available > 4096 then
            return { length = available, status_line = nil }
        end
        return nil, DESEGMENT_ONE_MORE_SEGMENT
    end
    local parts = { status_line = status_line, status_end = position, bare_lf = bare, lines = {} }
    local code = string.match(status_line, "^(%d+) ")
    parts.code = code and tonumber(code)
    if parts.code ~= 0 or not kind or kind == "quit" then
        parts.length = position - offset
        return parts
    end

    if kind == "get_file_listing" or kind == "help" then
        while true do
            local line, next_position, line_bare = read_line(text, position)
            if not line then
                return nil, DESEGMENT_ONE_MORE_SEGMENT
            end
            parts.bare_lf = parts.bare_lf or line_bare
            if line == "" then
                parts.length = next_position - offset
                return parts
            end
            table.insert(parts.lines, { start = position, text = line })
            position = next_position
        end
    elseif kind == "get_metadata" or (kind == "get_slice" and not request.raw) then
        local line, next_position, line_bare = read_line(text, position)
        if not line then
            local size = kind == "get_slice" and request.size
            local expected = size and 4 * math.ceil(size / 3) + 2
            if expected and expected > max_body then
                parts.continued = expected - (#text - position)
                parts.partial = { start = position, length = #text - position, what = "base64 slice" }
                parts.length = available
                return parts
            elseif expected and expected >= LONG_BASE64 and position + expected > #text then
                return nil, position + expected - #text
            end
            return nil, DESEGMENT_ONE_MORE_SEGMENT
        end
        parts.bare_lf = parts.bare_lf or line_bare
        table.insert(parts.lines, { start = position, text = line })
        parts.length = next_position - offset
        return parts
    end

    -- A raw slice: Content-Length: N, an empty line, N bytes.
    local header, after_header, header_bare = read_line(text, position)
    if not header then
        return nil, DESEGMENT_ONE_MORE_SEGMENT
    end
    parts.header = { start = position, text = header }
    parts.bare_lf = parts.bare_lf or header_bare
    local digits = string.match(header, "^Content%-Length: (%d+)$")
    if not digits or not decimal_uint64(digits) then
        -- Not the framing of a raw slice: show the line, and stop there.
        parts.length = after_header - offset
        return parts
    end
    local empty, body_start, empty_bare = read_line(text, after_header)
    if not empty then
        return nil, DESEGMENT_ONE_MORE_SEGMENT
    end
    parts.bare_lf = parts.bare_lf or empty_bare
    if empty ~= "" then
        parts.length = body_start - offset
        parts.no_blank_line = true
        return parts
    end
    parts.content_length = digits
    local body_length = tonumber(digits)
    parts.body_start = body_start
    parts.body_length = body_length
    local needed = body_start + body_length - #text
    if needed > 0 and body_length > max_body then
        parts.continued = needed
        parts.partial = { start = body_start, length = #text - body_start, what = "raw body" }
        parts.length = available
        return parts
    elseif needed > 0 then
        return nil, needed
    end
    parts.length = body_start + body_length - offset
    return parts
end

-- The rest of a body larger than the reassembly limit: shown as it comes.
local function dissect_continuation(tvb, offset, tree, pdu, info)
    local length = pdu.continuation
    local subtree = tree:add(hftp, tvb:range(offset, length),
        "HFTP, " .. pdu.what .. " continued (" .. length .. " bytes, " .. pdu.left .. " more to come)")
    subtree:add(f.body_part, tvb:range(offset, length))
    subtree:add(f.response_number, pdu.index):set_generated()
    info("Response: " .. pdu.what .. " continued")
    return length
end

local function dissect_response(tvb, text, pinfo, tree, conv, offset, info, key)
    local pdu = decided[key]

    if not pdu and not pinfo.visited and conv.continued then
        local continued = conv.continued
        local length = math.min(continued.left, tvb:len() - offset)
        continued.left = continued.left - length
        pdu = { continuation = length, left = continued.left, what = continued.what, index = continued.index }
        decided[key] = pdu
        if continued.left == 0 then
            conv.continued = nil
        end
    end
    if pdu and pdu.continuation then
        return dissect_continuation(tvb, offset, tree, pdu, info)
    end

    if (pdu and pdu.after_close) or (not pdu and not pinfo.visited and conv.server_done) then
        if not pdu then
            pdu = { after_close = conv.server_done }
            decided[key] = pdu
        end
        local length = tvb:len() - offset
        local subtree = tree:add(hftp, tvb:range(offset, length), "HFTP, data after the last answer")
        subtree:add(f.after_close, tvb:range(offset, length))
        subtree:add_proto_expert_info(e.violation,
            length .. " bytes sent after " .. pdu.after_close .. ": the server must close the connection")
        info("Data after " .. pdu.after_close)
        return length
    end

    local request = nil
    local index = pdu and pdu.index
    if not pdu then
        if pinfo.visited then
            -- The first pass never saw this response complete; let TCP
            -- reassembly show it where it ends.
            return nil, DESEGMENT_ONE_MORE_SEGMENT
        end
        index = conv.answered + 1
    end
    request = conv.requests[index]
    local kind = request and request.kind
    local parts, needed = measure_response(text, offset, request)
    if not parts then
        return nil, needed
    end
    local length = parts.length

    if not pdu then
        pdu = { index = index }
        decided[key] = pdu
        conv.answered = index
        if request then
            request.response_frame = pinfo.number
        end
        if parts.continued then
            conv.continued = { left = parts.continued, what = parts.partial.what, index = index }
        end
        if parts.code and parts.code >= 100 and parts.code <= 199 then
            conv.server_done = "a fatal error (" .. parts.code .. ")"
        elseif parts.code == 0 and kind == "quit" then
            conv.server_done = "the answer to quit"
        end
    end

    local title = "HFTP Response: " .. shorten(printable(parts.status_line or ""), 60)
    local subtree = tree:add(hftp, tvb:range(offset, length), title)
    -- What the Info column and the tree title add after the status line.
    local detail = ""

    if not parts.status_line then
        subtree:add_proto_expert_info(e.violation, "No end of line within 4096 bytes: not an HFTP status line")
        info("Response: not HFTP")
        return length
    end
    local code_text = string.match(parts.status_line, "^%d+")
    if parts.code then
        local text = string.sub(parts.status_line, #code_text + 2)
        subtree:add(f.status, tvb:range(offset, #code_text), parts.code)
        subtree:add(f.status_text, tvb:range(offset + #code_text + 1, #text), text)
        local expected = STATUS_TEXT[parts.code]
        if not expected then
            subtree:add_proto_expert_info(e.violation, "Unknown status code " .. parts.code)
        elseif expected ~= text then
            subtree:add_proto_expert_info(e.violation,
                "Status " .. parts.code .. " must read \"" .. expected .. "\", not \"" .. printable(text) .. "\"")
        end
        if parts.code >= 100 and parts.code <= 199 then
            subtree:add_proto_expert_info(e.fatal,
                "Fatal error " .. parts.status_line .. ": the server closes the connection")
        elseif parts.code ~= 0 then
            subtree:add_proto_expert_info(e.error_status, "Error " .. parts.status_line)
        end
    else
        subtree:add_proto_expert_info(e.violation,
            "Malformed status line \"" .. printable(parts.status_line) .. "\": CODE SPACE TEXT expected")
    end
    if parts.bare_lf then
        subtree:add_proto_expert_info(e.violation, "A line ended by LF without CR")
    end

    subtree:add(f.response_number, index):set_generated()
    if request then
        subtree:add(f.request_in, request.frame):set_generated()
        subtree:add(f.response_to, request.line):set_generated()
        local fatal_code = parts.code and parts.code >= 100 and parts.code <= 199
        if request.fatal and not fatal_code then
            subtree:add_proto_expert_info(e.violation, "A fatal error was due: the request has " .. request.fatal)
        elseif request.rejected and parts.code == 0 then
            subtree:add_proto_expert_info(e.violation, "0 OK to a request the server must reject: " .. request.rejected)
        end
    else
        subtree:add_proto_expert_info(e.unmatched,
            "No request of this connection is left to answer (did the capture start mid-connection?): body not parsed")
    end

    if parts.code == 0 and (kind == "get_file_listing" or kind == "help") then
        local field = kind == "help" and f.help_command or f.listing_name
        for _, line in ipairs(parts.lines) do
            subtree:add(field, tvb:range(line.start, #line.text), line.text)
        end
        subtree:add(kind == "help" and f.help_count or f.listing_count, #parts.lines):set_generated()
        detail = " (" .. #parts.lines .. (kind == "help" and " commands)" or " files)")
    elseif parts.code == 0 and kind == "get_metadata" then
        local line = parts.lines[1]
        local value = string.find(line.text, "^%d+$") and decimal_uint64(line.text)
        if value then
            subtree:add(f.file_size, tvb:range(line.start, #line.text), value)
            detail = " (size " .. line.text .. ")"
        else
            subtree:add_proto_expert_info(e.violation,
                "File size \"" .. printable(line.text) .. "\" is not a decimal number")
        end
    elseif parts.partial then
        -- Larger than the reassembly limit: this part now, the rest as it comes.
        local partial = parts.partial
        if parts.content_length then
            subtree:add(f.content_length, tvb:range(parts.header.start + 16, #parts.content_length),
                decimal_uint64(parts.content_length))
        end
        if partial.length > 0 then
            subtree:add(f.body_part, tvb:range(partial.start, partial.length))
        end
        subtree:add_proto_expert_info(e.not_reassembled,
            "A " .. partial.what .. " larger than the reassembly limit (" .. hftp.prefs.max_body
                .. " bytes, a preference of the protocol): " .. parts.continued .. " more bytes follow, not reassembled")
        detail = " (" .. partial.what .. ", not reassembled)"
    elseif parts.code == 0 and kind == "get_slice" and not request.raw then
        local line = parts.lines[1]
        local range = line.text == "" and tvb:range(line.start, 0) or tvb:range(line.start, #line.text)
        subtree:add(f.base64, range, line.text)
        subtree:add(f.base64_length, range, #line.text)
        local decoded_length = base64_decoded_length(line.text)
        if decoded_length then
            subtree:add(f.decoded_length, range, decoded_length):set_generated()
            if decoded_length > 0 then
                local decoded = ByteArray.new(line.text, true):base64_decode():tvb("Decoded slice")
                subtree:add(f.decoded, decoded:range())
            end
            detail = " (base64, " .. decoded_length .. " bytes)"
            local asked = split_tokens(request.line)[4] or "?"
            if tonumber(asked) ~= decoded_length then
                subtree:add_proto_expert_info(e.violation,
                    "The slice decodes to " .. decoded_length .. " bytes, the request asked for " .. asked)
            end
        else
            subtree:add_proto_expert_info(e.violation,
                "Not standard base64 on one line (RFC 4648 alphabet, = padding, length a multiple of 4)")
        end
    elseif parts.code == 0 and kind == "get_slice" then
        local header = parts.header
        local header_range = tvb:range(header.start, #header.text)
        if not parts.content_length then
            subtree:add_proto_expert_info(e.violation,
                "\"Content-Length: SIZE\" expected after 0 OK, got \"" .. printable(header.text) .. "\"")
        elseif parts.no_blank_line then
            subtree:add(f.content_length, header_range, decimal_uint64(parts.content_length))
            subtree:add_proto_expert_info(e.violation, "An empty line must follow Content-Length")
        else
            subtree:add(f.content_length, tvb:range(header.start + 16, #parts.content_length),
                decimal_uint64(parts.content_length))
            local body = tvb:range(parts.body_start, parts.body_length)
            subtree:add(f.body, body)
            subtree:add(f.body_length, body, parts.body_length):set_generated()
            detail = " (raw, " .. parts.body_length .. " bytes)"
            local asked = split_tokens(request.line)[4] or "?"
            if tonumber(asked) ~= parts.body_length then
                subtree:add_proto_expert_info(e.violation,
                    "Content-Length is " .. parts.body_length .. ", the request asked for " .. asked)
            end
        end
    end
    subtree:append_text(detail)
    info("Response: " .. printable(parts.status_line) .. detail)
    return length
end

------------------------------------------------------------------------
-- The dissector
------------------------------------------------------------------------

-- Whether the buffer starts with a TLS record holding a ClientHello
-- (content type 22, version 3.x, handshake type 1).
local function is_client_hello(tvb)
    if tvb:len() < 6 then
        return false
    end
    return tvb(0, 1):uint() == 22 and tvb(1, 1):uint() == 3 and tvb(2, 1):uint() <= 4
        and tvb(5, 1):uint() == 1
end

function hftp.dissector(tvb, pinfo, tree)
    local length = tvb:len()
    if length == 0 then
        return 0
    end
    local conv = conversation(pinfo)
    -- HFTP over TLS on the HFTP port: a connection whose first bytes are a
    -- ClientHello is not ours (a plain server would answer it 101 BAD
    -- REQUEST). Returning 0 makes TCP offer the segment to its heuristic
    -- dissectors, and TLS's takes the whole connection; the decrypted
    -- records come back here by ALPN or by TLS port. Decided on the first
    -- pass, so that a body that happens to start with those bytes later in
    -- a plain connection is never taken for TLS.
    local hello_key = "tls " .. pdu_key(tvb, pinfo, 0)
    if decided[hello_key] or (not pinfo.visited and #conv.requests == 0 and conv.answered == 0
            and not conv.client and is_client_hello(tvb)) then
        decided[hello_key] = true
        return 0
    end
    pinfo.cols.protocol = "HFTP"
    local client = from_client(pinfo, conv)
    local dissect = client and dissect_request or dissect_response

    -- Several PDUs in one frame are listed in the Info column, in order,
    -- whether they come in one buffer or in several calls (TCP: a PDU
    -- reassembled, then the rest of the segment; TLS: one call per record).
    -- The first replaces what the layers below wrote after their fence.
    local first = true
    local function info(text)
        if pinfo.private["hftp info"] then
            pinfo.cols.info:append(", " .. text)
        else
            pinfo.cols.info:set(text)
            pinfo.private["hftp info"] = "1"
        end
        first = false
    end

    local text = tvb:raw()
    local offset = 0
    while offset < length do
        local key, counter = pdu_key(tvb, pinfo, offset)
        local consumed, needed = dissect(tvb, text, pinfo, tree, conv, offset, info, key)
        if consumed then
            count_pdu(pinfo, counter)
        else
            pinfo.desegment_offset = offset
            pinfo.desegment_len = needed
            if first and not pinfo.private["hftp info"] then
                pinfo.cols.info:set(client and "Request (continues in a later segment)"
                    or "Response (continues in a later segment)")
            end
            return length
        end
        offset = offset + consumed
    end
    return offset
end

DissectorTable.get("tcp.port"):add(DEFAULT_PORT, hftp)

-- Over TLS: by ALPN "hftp" (what hftp serve --tls-cert negotiates), and on
-- TLS port 19500 for a client that offers no ALPN. Wireshark 3.0 and later
-- have both tables; an older one loads the script without them (no TLS).
local function register_over_tls(name, pattern)
    local ok, dissector_table = pcall(DissectorTable.get, name)
    if ok and dissector_table then
        dissector_table:add(pattern, hftp)
    end
end
register_over_tls("tls.alpn", "hftp")
register_over_tls("tls.port", DEFAULT_PORT)
