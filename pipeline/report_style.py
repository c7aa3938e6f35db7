"""The HTML report's stylesheet, inlined into every page (no fonts, images or anything else to fetch)."""

CSS = """
:root{--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 32px 40px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:16px}
h1{font-size:26px;margin:2px 0 4px;letter-spacing:-.01em}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 10px}
.eyebrow{color:var(--muted);font-size:13px}
.path{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--muted);word-break:break-all}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin-top:16px}
.pill{border-radius:999px;padding:5px 14px;font-weight:600;font-size:14px;white-space:nowrap;border:1px solid}
.verdict{margin-top:14px;padding:10px 14px;border-radius:8px;font-weight:500;border:1px solid}
.ok{background:#ecfdf5;color:#065f46;border-color:#a7f3d0}
.warn{background:#fffbeb;color:#92400e;border-color:#fde68a}
.bad{background:#fef2f2;color:#991b1b;border-color:#fecaca}
.info{background:#eff6ff;color:#1e40af;border-color:#bfdbfe}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:0;padding:0;overflow:hidden}
.kpi{padding:14px 16px;border-right:1px solid var(--line)}
.kpi:last-child{border-right:0}
.kpi .k{color:var(--muted);font-size:12px}
.kpi .v{font-size:20px;font-weight:650;font-variant-numeric:tabular-nums;white-space:nowrap}
.stack{display:flex;height:14px;border-radius:7px;overflow:hidden;background:var(--line)}
.stack span{display:block;height:100%;min-width:2px}
.badges{display:flex;flex-wrap:wrap;gap:8px;margin-top:12px}
.badge{display:inline-flex;align-items:baseline;gap:6px;border-radius:6px;padding:3px 10px;font-size:13px;
font-variant-numeric:tabular-nums;border:1px solid transparent}
.badge small{opacity:.7}
.badge.zero{opacity:.45}
.s-created{background:#dcfce7;color:#166534}.stack .s-created{background:#16a34a}
.s-invalid{background:#f1f5f9;color:#334155;border-color:#cbd5e1}.stack .s-invalid{background:#94a3b8}
.s-duplicate{background:#f5f3ff;color:#5b21b6}.stack .s-duplicate{background:#a78bfa}
.s-rejected{background:#fee2e2;color:#991b1b}.stack .s-rejected{background:#dc2626}
.s-failed{background:#ffedd5;color:#9a3412}.stack .s-failed{background:#f97316}
.s-unknown{background:#fef9c3;color:#854d0e}.stack .s-unknown{background:#eab308}
.s-pending{background:#e0f2fe;color:#075985}.stack .s-pending{background:#38bdf8}
.cols{display:grid;grid-template-columns:1.4fr 1fr 1fr;gap:28px}
.cols h2+table+h2{margin-top:16px}
table{border-collapse:collapse;width:100%}
.facts th{text-align:left;font-weight:500;color:var(--muted);padding:4px 12px 4px 0;white-space:nowrap;
vertical-align:top;width:1%}
.facts td{padding:4px 0;word-break:break-all;font-variant-numeric:tabular-nums}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.latency th{text-align:left;font-weight:500;color:var(--muted);width:1%;padding:5px 12px 5px 0}
.latency td{padding:5px 0}
.latency .num{padding-right:12px;width:1%}
.barcell{width:100%}
.bar{display:block;height:10px;border-radius:5px;background:#2563eb;min-width:2px}
.chart{display:block;margin-top:4px}
.chart text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
.chart .tick{font-size:11px;fill:#64748b;font-variant-numeric:tabular-nums}
.chart .axis{font-size:11px;fill:#475569}
.chart .legend{font-size:12px;fill:#334155}
.chart .grid{stroke:#eef2f7;stroke-width:1}
.chart .axisline{stroke:#94a3b8;stroke-width:1}
.chart .series{fill:none;stroke-width:1.6;stroke-linejoin:round}
.chart .limit{fill:none;stroke-width:1.5;stroke-dasharray:5 3}
.chart .fill{opacity:.08;stroke:none}
.chart .band{opacity:.16;stroke:none}
.caption{color:var(--muted);font-size:12px;margin:8px 0 0}
.muted{color:var(--muted)}
.errors th{text-align:left;color:var(--muted);font-weight:500;font-size:12px;border-bottom:1px solid var(--line);
padding:6px 10px}
.errors th.num,.orgs th.num{text-align:right}
.errors td{padding:6px 10px;vertical-align:top}
.errors tr.code td{border-top:1px solid var(--line)}
.errors tbody tr.code:first-child td{border-top:0}
.errors tr.code td:first-child{width:1%;white-space:nowrap}
.errors tr.example td{padding-top:0;font-size:12px}
.where{color:var(--muted);margin-right:12px;font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.contact{color:#475569;margin-right:12px}
.msg{color:var(--ink);word-break:break-word}
.orgs th{text-align:left;color:var(--muted);font-weight:500;font-size:12px;border-bottom:1px solid var(--line);
padding:6px 8px}
.orgs td{padding:6px 8px;border-bottom:1px solid var(--line)}
.bad-text{color:#991b1b}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:20px}
@media (max-width:900px){.cols{grid-template-columns:1fr}}
@media print{body{background:#fff}section{break-inside:avoid}}
"""
