"use strict";(self.rspackChunknbrelay=self.rspackChunknbrelay||[]).push([[0],{19(e,t,n){var r=n(20),o=n.n(r),a=n(21),s=(n.n(a))()(o());s.push([e.id,`.jp-nbrelay-status .jp-nbrelay-button {
  border: none;
  background: none;
  font-size: var(--jp-ui-font-size1);
  color: var(--jp-ui-font-color2);
  cursor: pointer;
}

.jp-nbrelay-button[data-state='relaying'] {
  color: var(--jp-success-color1);
}

.jp-nbrelay-button[data-state='no-daemon'],
.jp-nbrelay-button[data-state='refused'],
.jp-nbrelay-button[data-state='error'] {
  color: var(--jp-warn-color1);
}

.jp-nbrelay-status .jp-nbrelay-viewer {
  font-size: var(--jp-ui-font-size1);
  color: var(--jp-content-link-color);
  margin-left: 4px;
}
`,""]),n.d(t,{},{A:s})},21(e){e.exports=function(e){var t=[];return t.toString=function(){return this.map(function(t){var n="",r=void 0!==t[5];return t[4]&&(n+="@supports (".concat(t[4],") {")),t[2]&&(n+="@media ".concat(t[2]," {")),r&&(n+="@layer".concat(t[5].length>0?" ".concat(t[5]):""," {")),n+=e(t),r&&(n+="}"),t[2]&&(n+="}"),t[4]&&(n+="}"),n}).join("")},t.i=function(e,n,r,o,a){"string"==typeof e&&(e=[[null,e,void 0]]);var s={};if(r)for(var c=0;c<this.length;c++){var i=this[c][0];null!=i&&(s[i]=!0)}for(var u=0;u<e.length;u++){var l=[].concat(e[u]);r&&s[l[0]]||(void 0!==a&&(void 0===l[5]||(l[1]="@layer".concat(l[5].length>0?" ".concat(l[5]):""," {").concat(l[1],"}")),l[5]=a),n&&(l[2]&&(l[1]="@media ".concat(l[2]," {").concat(l[1],"}")),l[2]=n),o&&(l[4]?(l[1]="@supports (".concat(l[4],") {").concat(l[1],"}"),l[4]=o):l[4]="".concat(o)),t.push(l))}},t}},20(e){e.exports=function(e){return e[1]}},13(e){var t=[];function n(e){for(var n=-1,r=0;r<t.length;r++)if(t[r].identifier===e){n=r;break}return n}function r(e,r){for(var o={},a=[],s=0;s<e.length;s++){var c=e[s],i=r.base?c[0]+r.base:c[0],u=o[i]||0,l="".concat(i," ").concat(u);o[i]=u+1;var p=n(l),d={css:c[1],media:c[2],sourceMap:c[3],supports:c[4],layer:c[5]};if(-1!==p)t[p].references++,t[p].updater(d);else{var f=function(e,t){var n=t.domAPI(t);return n.update(e),function(t){t?(t.css!==e.css||t.media!==e.media||t.sourceMap!==e.sourceMap||t.supports!==e.supports||t.layer!==e.layer)&&n.update(e=t):n.remove()}}(d,r);r.byIndex=s,t.splice(s,0,{identifier:l,updater:f,references:1})}a.push(l)}return a}e.exports=function(e,o){var a=r(e=e||[],o=o||{});return function(e){e=e||[];for(var s=0;s<a.length;s++){var c=n(a[s]);t[c].references--}for(var i=r(e,o),u=0;u<a.length;u++){var l=n(a[u]);0===t[l].references&&(t[l].updater(),t.splice(l,1))}a=i}}},15(e){var t={};e.exports=function(e,n){var r=function(e){if(void 0===t[e]){var n=document.querySelector(e);if(window.HTMLIFrameElement&&n instanceof window.HTMLIFrameElement)try{n=n.contentDocument.head}catch(e){n=null}t[e]=n}return t[e]}(e);if(!r)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");r.appendChild(n)}},17(e){e.exports=function(e){var t=document.createElement("style");return e.setAttributes(t,e.attributes),e.insert(t,e.options),t}},16(e,t,n){e.exports=function(e){var t=n.nc;t&&e.setAttribute("nonce",t)}},14(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var t=e.insertStyleElement(e);return{update:function(n){var r,o,a;r="",n.supports&&(r+="@supports (".concat(n.supports,") {")),n.media&&(r+="@media ".concat(n.media," {")),(o=void 0!==n.layer)&&(r+="@layer".concat(n.layer.length>0?" ".concat(n.layer):""," {")),r+=n.css,o&&(r+="}"),n.media&&(r+="}"),n.supports&&(r+="}"),(a=n.sourceMap)&&"u">typeof btoa&&(r+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),e.styleTagTransform(r,t,e.options)},remove:function(){var e;null===(e=t).parentNode||e.parentNode.removeChild(e)}}}},18(e){e.exports=function(e,t){if(t.styleSheet)t.styleSheet.cssText=e;else{for(;t.firstChild;)t.removeChild(t.firstChild);t.appendChild(document.createTextNode(e))}}},12(e,t,n){var r=n(13),o=n.n(r),a=n(14),s=n.n(a),c=n(15),i=n.n(c),u=n(16),l=n.n(u),p=n(17),d=n.n(p),f=n(18),v=n.n(f),m=n(19),y={};y.styleTagTransform=v(),y.setAttributes=l(),y.insert=i().bind(null,"head"),y.domAPI=s(),y.insertStyleElement=d(),o()(m.A,y),m.A&&m.A.locals&&m.A.locals}}]);