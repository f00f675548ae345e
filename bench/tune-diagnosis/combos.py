import json, itertools, sys
def rank(a):
    idx=sorted(range(len(a)),key=lambda i:a[i]); r=[0]*len(a); i=0
    while i<len(idx):
        j=i
        while j+1<len(idx) and a[idx[j+1]]==a[idx[i]]: j+=1
        for k in range(i,j+1): r[idx[k]]=(i+j)/2
        i=j+1
    return r
def sp(a,b):
    ra,rb=rank(a),rank(b); n=len(a); ma=sum(ra)/n; mb=sum(rb)/n
    num=sum((x-ma)*(y-mb) for x,y in zip(ra,rb)); da=sum((x-ma)**2 for x in ra); db=sum((y-mb)**2 for y in rb)
    return num/(da*db)**.5 if da*db>0 else float('nan')
obj=lambda p:(p['image_auroc']+p['pixel_auroc']+p['aupro'])/3
res={}
for f in sys.argv[1:]:
    d=json.load(open(f)); rows=d['rows']
    kinds=list(rows[0]['perKind'].keys())
    dflt=[r for r in rows if r['preset']['layers'][0]['forwardPatch']==5 and r['preset']['layers'][0]['alpha']==0.3 and r['preset']['layers'][2]['lambda']==0.8 and r['preset']['layers'][1]['lambda']==1 and r['preset']['pixel']['kind']=='none'][0]
    for n in range(1,len(kinds)+1):
        for combo in itertools.combinations(kinds,n):
            o=[sum(obj(r['perKind'][k]) for k in combo)/n for r in rows]
            b=max(range(len(rows)),key=lambda i:o[i])
            ro=[obj(r['real']) for r in rows]
            real=rows[b]['real']; dr=dflt['real']
            res.setdefault(combo,[]).append((sp(o,ro), sp(o,[r['real']['pixel_auroc'] for r in rows]), sp(o,[r['real']['aupro'] for r in rows]), 100*(real['image_auroc']-dr['image_auroc']),100*(real['pixel_auroc']-dr['pixel_auroc']),100*(real['aupro']-dr['aupro'])))
out=sorted(res.items(), key=lambda kv:-sum(x[0] for x in kv[1]))
print('combo | per file: rho(obj) rho(pA) rho(AUPRO) | chosen - default: dIA dPA dAUPRO')
for combo,v in out[:25]:
    print(','.join(combo).ljust(40), ' || '.join('%.2f %.2f %.2f | %+.2f %+.2f %+.2f'%x for x in v))
