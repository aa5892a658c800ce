#!/usr/bin/awk -f
# Prints the output of each test that failed in a `go test -v` log, under its
# name, in the order the tests started. Output lines belong to the test that
# the last "=== RUN", "=== CONT" or "=== NAME" line named.
/^=== (RUN|CONT|NAME|PAUSE) / {
	test = $3
	if (!(test in seen)) { seen[test] = 1; order[++n] = test }
	next
}
/^ *--- (FAIL|PASS|SKIP): / {
	if ($2 == "FAIL:") failed[$3] = 1
	test = ""
	next
}
/^(PASS|FAIL|ok |FAIL\t)/ { test = ""; next }
test != "" { out[test] = out[test] $0 "\n" }
END {
	for (i = 1; i <= n; i++) {
		t = order[i]
		if ((t in failed) && (t in out)) printf "--- %s\n%s", t, out[t]
	}
}
