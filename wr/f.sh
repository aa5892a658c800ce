window_rows() {
  awk -F'\t' -v OFS='\t' '
    FILENAME == ARGV[1] { acct[$1] = $2 OFS $3 OFS $4 OFS "" OFS "" OFS $5; next }
    /^  "segments": \[/ { in_segs = 1; next }
    in_segs && /^  \]/ { in_segs = 0 }
    !in_segs { next }
    /^      "label": / { sub(/^      "label": "/, ""); sub(/",$/, ""); label = $0 }
    /^      "duration_ns": / { gsub(/[^0-9]/, ""); dur = $0 }
    /^      "flows": / {
      gsub(/[^0-9]/, ""); flows = $0
      n = split(label, w, " ")
      if (seg > 0) {
        note = (seg in acct) ? acct[seg] : OFS OFS OFS OFS OFS "ok"
        printf "%s\t%s\t%s\t%.1f\t%d\t%s\n", w[1], (n > 1 ? w[2] : "none"), (n > 2 ? w[3] : "-"), dur > 0 ? flows * 1e9 / dur : 0, flows, note
      }
      seg++
    }' runs/windows.tsv "$1"
}
window_rows ../fl.json
